import type { Tick, TickLog } from "../../domain/ports.ts";

/**
 * The embedded time stream: the JetStream one's behaviour in one process. A second is kept once however
 * often it is published; ticks wait in order and go, one at a time across every consumer, to whichever
 * consumer is next, and count as acknowledged when the handler settles (also when it was stopped).
 */

export type InMemoryTickLogOptions = {
  /** Seconds remembered for de-duplication (the JetStream duplicate window is 2 minutes). */
  dedupeSeconds?: number;
  /** Most ticks kept waiting (the JetStream stream keeps an hour). */
  maxWaiting?: number;
};

type Consumer = {
  handler: Parameters<TickLog["consume"]>[0];
  stopped: boolean;
  controller: AbortController;
};

export function createInMemoryTickLog(options: InMemoryTickLogOptions = {}): TickLog {
  const dedupeSeconds = options.dedupeSeconds ?? 120;
  const maxWaiting = options.maxWaiting ?? 3600;
  const seen = new Set<number>();
  const waiting: number[] = [];
  const consumers: Consumer[] = [];
  let next = 0;
  let inFlight: { consumer: Consumer; settled: Promise<void> } | undefined;

  const remember = (second: number) => {
    seen.add(second);
    for (const old of seen) {
      if (old > second - dedupeSeconds) break;
      seen.delete(old);
    }
  };

  const deliver = () => {
    if (inFlight !== undefined || waiting.length === 0) return;
    const live = consumers.filter((c) => !c.stopped);
    if (live.length === 0) return;
    const consumer = live[next++ % live.length] as Consumer;
    const second = waiting.shift() as number;
    const tick: Tick = { second, pending: waiting.length };
    // Off the publisher's stack, as a message from the server would be.
    const settled = Promise.resolve()
      .then(() => consumer.handler(tick, { working: () => {}, signal: consumer.controller.signal }))
      .catch(() => {})
      .finally(() => {
        inFlight = undefined;
        deliver();
      });
    inFlight = { consumer, settled };
  };

  return {
    async publish(second) {
      if (seen.has(second)) return { duplicate: true };
      remember(second);
      waiting.push(second);
      if (waiting.length > maxWaiting) waiting.splice(0, waiting.length - maxWaiting);
      deliver();
      return { duplicate: false };
    },
    consume(handler) {
      const consumer: Consumer = { handler, stopped: false, controller: new AbortController() };
      consumers.push(consumer);
      deliver();
      return {
        async stop() {
          consumer.stopped = true;
          consumer.controller.abort(new Error("tick consumer stopped"));
          const index = consumers.indexOf(consumer);
          if (index >= 0) consumers.splice(index, 1);
          if (inFlight?.consumer === consumer) await inFlight.settled;
        },
      };
    },
  };
}
