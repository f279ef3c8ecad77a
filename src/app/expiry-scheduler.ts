import type { Clock, Tick, TickLog, TickSource } from "../domain/ports.ts";
import type { SessionState } from "../domain/session-state.ts";
import type { CommandContext, HandleResult } from "./command-handler.ts";
import { type DeadlineIndex, deadlineOf } from "./deadline-index.ts";
import type { SessionReadModel, ValidationReplica } from "./ports.ts";

/**
 * Turns time into commands (DESIGN §5). Each tick the time stream hands this instance (one tick at a
 * time across the deployment) becomes one expiry pass: every session whose absolute or idle deadline has
 * passed gets an `ExpireSession`, at most `concurrency` at once. A tick with newer ones already waiting
 * behind it is acknowledged without a pass — after downtime an hour of ticks costs one pass, not 3,600.
 *
 * Due sessions come from two places, so neither a lagging read model nor a lagging KV view can hide one:
 * this instance's deadline index (fed by its validation replica), and the Postgres read model's overdue
 * query (filtered through the replica, which knows about renewals the read model has not seen yet). The
 * decider re-checks every deadline on the session's own stream, so a stale candidate (renewed meanwhile,
 * or already expired by someone else) appends nothing; the command id `expire:<sessionId>` lets the log
 * de-duplicate two instances expiring the same session at the same moment.
 */

export type ExpireFn = (
  sessionId: string,
  tick: number | undefined,
  context: CommandContext,
) => Promise<HandleResult<SessionState>>;

export type ExpirySchedulerDeps = {
  ticks: TickLog;
  index: DeadlineIndex;
  replica: ValidationReplica;
  readModel: Pick<SessionReadModel, "overdueSessionIds">;
  expire: ExpireFn;
  clock: Clock;
  /**
   * Waits (bounded) until the read model has applied the log as it stands at the call; the sweep waits
   * before each page so it sees every session and not the same stale rows twice.
   */
  readModelCaughtUp?: ((timeoutMs: number) => Promise<unknown>) | undefined;
  /** Most ExpireSession commands in flight at once (default 16). */
  concurrency?: number | undefined;
  /** Read-model rows looked at per query (default 500). */
  pageSize?: number | undefined;
  onError?: ((error: unknown, context: { sessionId?: string | undefined }) => void) | undefined;
};

export type PassResult = {
  tick: number | undefined;
  /** Sessions found overdue (candidates handed to the decider). */
  due: number;
  /** SessionExpired events this pass appended. */
  expired: number;
  failed: number;
  startedAt: number;
  durationMs: number;
};

export type SchedulerStats = {
  ticks: number;
  /** Ticks acknowledged without a pass because a newer one was waiting. */
  coalesced: number;
  passes: number;
  expired: number;
  failed: number;
  lastPass: PassResult | undefined;
};

export type ExpiryScheduler = {
  /** Starts taking ticks from the time stream. */
  start(): void;
  stop(): Promise<void>;
  /** One pass now, as a tick would run it. */
  runPass(options?: PassOptions): Promise<PassResult>;
  /**
   * Expires every overdue session now, paging through the whole read model (POST /v1/sessions/cleanup).
   * Returns how many SessionExpired events this call appended.
   */
  sweep(context: Omit<CommandContext, "commandId">): Promise<number>;
  readonly stats: SchedulerStats;
};

type PassOptions = {
  tick?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Called as the pass makes progress (keeps the tick from being redelivered elsewhere). */
  working?: (() => void) | undefined;
};

const SCHEDULER_ACTOR = { kind: "system", id: "expiry-scheduler" } as const;
const RETRY_AFTER_MS = 1_000;
const WORKING_EVERY_MS = 1_000;

export function createExpiryScheduler(deps: ExpirySchedulerDeps): ExpiryScheduler {
  const { index, replica, clock } = deps;
  const concurrency = Math.max(1, deps.concurrency ?? 16);
  const pageSize = Math.max(1, deps.pageSize ?? 500);
  const onError = deps.onError ?? (() => {});
  const stats: SchedulerStats = {
    ticks: 0,
    coalesced: 0,
    passes: 0,
    expired: 0,
    failed: 0,
    lastPass: undefined,
  };
  let consumer: { stop(): Promise<void> } | undefined;

  /** Is this id worth a command at `now`? The replica knows about renewals the read model may not. */
  const plausiblyDue = (sessionId: string, now: number) => {
    const entry = replica.getSession(sessionId);
    return entry === undefined || (entry.status === "active" && deadlineOf(entry) <= now);
  };

  /** Empties the index up to `now`: due ids are returned, the rest filed again under their real deadline. */
  const dueFromIndex = (now: number, into: Set<string>) => {
    for (const id of index.takeUntil(now)) {
      const entry = replica.getSession(id);
      if (entry === undefined || entry.status !== "active") continue;
      const deadline = deadlineOf(entry);
      if (deadline > now) index.add(entry.sessionId, deadline);
      else into.add(entry.sessionId);
    }
  };

  const dueFromReadModel = async (now: number, into: Set<string>): Promise<number> => {
    const rows = await deps.readModel.overdueSessionIds(now, pageSize);
    for (const id of rows) if (plausiblyDue(id, now)) into.add(id);
    return rows.length;
  };

  /** Issues ExpireSession for each candidate, `concurrency` at a time; returns [expired, failed]. */
  const expireAll = async (
    candidates: Iterable<string>,
    tick: number | undefined,
    contextFor: (sessionId: string) => CommandContext,
    options: PassOptions,
  ): Promise<[number, number]> => {
    const queue = [...candidates];
    let expired = 0;
    let failed = 0;
    let lastWorking = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < queue.length) {
        const sessionId = queue[next++] as string;
        if (options.signal?.aborted) {
          index.add(sessionId, clock.now());
          continue;
        }
        try {
          const result = await deps.expire(sessionId, tick, contextFor(sessionId));
          const state = result.state;
          if (state.status === "active") index.add(state.sessionId, deadlineOf(state));
          else if (result.appended.length > 0) expired++;
        } catch (error) {
          failed++;
          // Tried again by a later pass (here or, through the read model, anywhere).
          index.add(sessionId, clock.now() + RETRY_AFTER_MS);
          onError(error, { sessionId });
        }
        if (options.working && Date.now() - lastWorking >= WORKING_EVERY_MS) {
          lastWorking = Date.now();
          options.working();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    return [expired, failed];
  };

  const schedulerContext = (tick: number | undefined) => (sessionId: string) => ({
    commandId: `expire:${sessionId}`,
    correlationId: tick === undefined ? undefined : `tick:${tick}`,
    causationId: tick === undefined ? undefined : `tick:${tick}`,
    actor: SCHEDULER_ACTOR,
    source: "scheduler" as const,
  });

  async function runPass(options: PassOptions = {}): Promise<PassResult> {
    const startedAt = clock.now();
    const started = performance.now();
    const candidates = new Set<string>();
    dueFromIndex(startedAt, candidates);
    try {
      await dueFromReadModel(startedAt, candidates);
    } catch (error) {
      // The index alone still covers every session this instance's replica knows.
      onError(error, {});
    }
    const [expired, failed] = await expireAll(
      candidates,
      options.tick,
      schedulerContext(options.tick),
      options,
    );
    const result: PassResult = {
      tick: options.tick,
      due: candidates.size,
      expired,
      failed,
      startedAt,
      durationMs: performance.now() - started,
    };
    stats.passes++;
    stats.expired += expired;
    stats.failed += failed;
    stats.lastPass = result;
    return result;
  }

  const onTick = async (tick: Tick, control: { working(): void; signal: AbortSignal }) => {
    stats.ticks++;
    if (tick.pending > 0) {
      stats.coalesced++;
      return;
    }
    await runPass({ tick: tick.second, signal: control.signal, working: control.working });
  };

  return {
    start() {
      if (consumer === undefined) consumer = deps.ticks.consume(onTick);
    },
    async stop() {
      const running = consumer;
      consumer = undefined;
      await running?.stop();
    },
    runPass,
    async sweep(context) {
      const now = clock.now();
      const contextFor = (sessionId: string): CommandContext => ({
        ...context,
        commandId: `expire:${sessionId}`,
      });
      let total = 0;
      const seen = new Set<string>();
      const first = new Set<string>();
      dueFromIndex(now, first);
      for (const id of first) seen.add(id);
      let [expired] = await expireAll(first, undefined, contextFor, {});
      total += expired;
      for (;;) {
        await deps.readModelCaughtUp?.(5_000);
        const page = new Set<string>();
        const rows = await dueFromReadModel(now, page);
        const fresh = [...page].filter((id) => !seen.has(id));
        for (const id of fresh) seen.add(id);
        [expired] = await expireAll(fresh, undefined, contextFor, {});
        total += expired;
        // A short page was the last one; a page with nothing new means the rest is only projection lag.
        if (rows < pageSize || fresh.length === 0) break;
      }
      stats.expired += total;
      return total;
    },
    get stats() {
      return stats;
    },
  };
}

export type TickPublisherStats = { published: number; duplicates: number; failed: number };

export type TickPublisher = {
  stop(): Promise<void>;
  /** Resolves once every tick emitted so far has been published (or has failed). */
  flushed(): Promise<void>;
  readonly stats: TickPublisherStats;
};

/**
 * Publishes each second the source emits to the time stream, in order, one at a time. If publishing
 * falls behind (NATS unreachable), only the newest `maxQueued` seconds are kept: older ticks would only
 * be coalesced away by the scheduler anyway.
 */
export function startTickPublisher(deps: {
  source: TickSource;
  ticks: TickLog;
  maxQueued?: number;
  onError?: (error: unknown, second: number) => void;
}): TickPublisher {
  const maxQueued = Math.max(1, deps.maxQueued ?? 30);
  const stats: TickPublisherStats = { published: 0, duplicates: 0, failed: 0 };
  const queue: number[] = [];
  let draining: Promise<void> | undefined;
  let stopped = false;

  const drain = async () => {
    while (queue.length > 0) {
      const second = queue.shift() as number;
      try {
        const { duplicate } = await deps.ticks.publish(second);
        if (duplicate) stats.duplicates++;
        else stats.published++;
      } catch (error) {
        stats.failed++;
        deps.onError?.(error, second);
      }
    }
    draining = undefined;
  };

  const stopSource = deps.source.start((second) => {
    if (stopped) return;
    queue.push(second);
    if (queue.length > maxQueued) queue.splice(0, queue.length - maxQueued);
    draining ??= drain();
  });

  return {
    async stop() {
      stopped = true;
      stopSource();
      queue.length = 0;
      await draining;
    },
    async flushed() {
      while (draining) await draining;
    },
    get stats() {
      return stats;
    },
  };
}
