import type { Follower } from "../../domain/ports.ts";

/**
 * The followers an event-log adapter has running, so that closing the log stops each of them. Shared by
 * both adapters: a follower leaves the set when it stops or its run ends, whichever comes first.
 */
export function createFollowerSet() {
  const followers = new Set<Follower>();
  return {
    /**
     * Wraps a running follower: `halt` makes its run end (it must not throw); `stop()` waits for the run,
     * and so for the batch being applied, before it resolves.
     */
    track(done: Promise<void>, halt: () => void): Follower {
      // The owner learns of a failure through `done`; an unobserved one must not crash the process.
      done.catch(() => {});
      const follower: Follower = {
        done,
        async stop() {
          halt();
          await done.catch(() => {});
          followers.delete(follower);
        },
      };
      followers.add(follower);
      done.then(
        () => followers.delete(follower),
        () => followers.delete(follower),
      );
      return follower;
    },

    async stopAll(): Promise<void> {
      await Promise.all([...followers].map((follower) => follower.stop()));
    },
  };
}
