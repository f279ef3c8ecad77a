import type { LeaseManager } from "../../domain/ports.ts";

/**
 * Embedded mode has one instance, so it always holds every lease. It keeps the KV manager's other
 * behaviour: one holder per name, and work that ends on its own (it failed, say) is started again after
 * `restartDelayMs`, until the lease is released.
 */

export type InMemoryLeaseManagerOptions = {
  restartDelayMs?: number;
  onError?: (error: unknown, context: { name: string; during: "work" }) => void;
};

export function createInMemoryLeaseManager(options: InMemoryLeaseManagerOptions = {}): LeaseManager {
  const restartDelayMs = options.restartDelayMs ?? 2_000;
  const onError = options.onError ?? (() => {});
  const active = new Set<string>();

  return {
    hold(name, work) {
      if (active.has(name)) throw new Error(`lease manager: ${name} is already held here`);
      active.add(name);
      let released = false;
      let controller: AbortController | undefined;
      let running: Promise<void> | undefined;
      let restartTimer: NodeJS.Timeout | undefined;

      const start = () => {
        if (released) return;
        const c = new AbortController();
        controller = c;
        running = Promise.resolve()
          .then(() => work(c.signal))
          .catch((error: unknown) => {
            if (!c.signal.aborted) onError(error, { name, during: "work" });
          })
          .finally(() => {
            controller = undefined;
            if (!released) restartTimer = setTimeout(start, restartDelayMs);
          });
      };
      start();

      return {
        isHolder: () => !released && controller !== undefined,
        async release() {
          released = true;
          clearTimeout(restartTimer);
          controller?.abort(new Error(`lease ${name}: released`));
          await running;
          active.delete(name);
        },
      };
    },
  };
}
