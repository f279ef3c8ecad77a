import type { Clock, TickSource } from "../../domain/ports.ts";
import type { FakeClock } from "./fake-clock.ts";

/**
 * Where ticks come from. The system source follows the wall clock; the fake one follows a FakeClock, so
 * tests move time by hand and expiry follows without sleeps; the manual one ticks only when told to.
 */

/** Fires just after each second boundary of `clock` (re-aimed every time, so it never drifts). */
export function createSystemTickSource(clock: Clock, options: { lateByMs?: number } = {}): TickSource {
  // A few ms past the boundary, so a timer that fires a little early still lands in the new second.
  const lateByMs = options.lateByMs ?? 5;
  return {
    start(onTick) {
      let last = Math.floor(clock.now() / 1000);
      let timer: NodeJS.Timeout | undefined;
      let stopped = false;
      const arm = () => {
        const now = clock.now();
        timer = setTimeout(fire, 1000 - (now % 1000) + lateByMs);
        // Ticking must never keep a shutting-down process alive.
        timer.unref?.();
      };
      const fire = () => {
        if (stopped) return;
        const second = Math.floor(clock.now() / 1000);
        if (second > last) {
          last = second;
          onTick(second);
        }
        arm();
      };
      arm();
      return () => {
        stopped = true;
        clearTimeout(timer);
      };
    },
  };
}

/**
 * Ticks whenever a fake clock crosses a second boundary: every second crossed, oldest first, but at most
 * the newest `maxBurst` of a long jump (only the newest matters to the scheduler). Moving the clock back
 * emits nothing until it passes the last second emitted.
 */
export function createFakeTickSource(clock: FakeClock, options: { maxBurst?: number } = {}): TickSource {
  const maxBurst = Math.max(1, options.maxBurst ?? 60);
  return {
    start(onTick) {
      let last = Math.floor(clock.now() / 1000);
      return clock.onChange((now) => {
        const second = Math.floor(now / 1000);
        if (second <= last) return;
        const first = Math.max(last + 1, second - maxBurst + 1);
        last = second;
        for (let s = first; s <= second; s++) onTick(s);
      });
    },
  };
}

export type ManualTickSource = TickSource & {
  /** Emits one tick to every started listener. */
  tick(epochSecond: number): void;
};

/** Ticks only when a test calls `tick`: for tests that want the scheduler out of the way or fully in hand. */
export function createManualTickSource(): ManualTickSource {
  const listeners = new Set<(second: number) => void>();
  return {
    start(onTick) {
      listeners.add(onTick);
      return () => {
        listeners.delete(onTick);
      };
    },
    tick(second) {
      for (const listener of listeners) listener(second);
    },
  };
}

function isFakeClock(clock: Clock): clock is FakeClock {
  return typeof (clock as Partial<FakeClock>).onChange === "function";
}

/** The tick source that belongs with a clock: a fake clock drives its own ticks, anything else the timer. */
export function tickSourceFor(clock: Clock): TickSource {
  return isFakeClock(clock) ? createFakeTickSource(clock) : createSystemTickSource(clock);
}
