import type { Clock, Tick, TickLog } from "../domain/ports.ts";
import type { ActiveSession, DeadlineFacts, SessionState } from "../domain/session-state.ts";
import type { CommandContext } from "./command-handler.ts";
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
 *
 * A pass expires the index's sessions earliest deadline first — they have waited longest, so a pass that
 * runs long delays the ones that fell due last — while the read model's query runs; what it adds is
 * expired after them. The `expire` of the service (`entry-expiry.ts`) decides on the replica's entry and
 * appends without reading the stream; its write-through to the shared view comes back as `following`:
 * a worker starts its next expiry meanwhile, and the pass ends only once every one is done, so the next
 * pass (on either instance) finds these sessions ended in its replica.
 */

/** What an ExpireSession left behind: the session's state (still active: renewed meanwhile) and what it appended. */
export type ExpireResult = {
  state:
    | ({ status: "active" } & Pick<ActiveSession, "sessionId"> & DeadlineFacts)
    | { status: Exclude<SessionState["status"], "active"> };
  appended: readonly unknown[];
  /**
   * Work that follows the append and need not hold up the next one (the write-through to the shared
   * validation view); the pass waits for it before it ends. Must not reject.
   */
  following?: Promise<unknown> | undefined;
};

export type ExpireFn = (
  sessionId: string,
  tick: number | undefined,
  context: CommandContext,
) => Promise<ExpireResult>;

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
  /** Most ExpireSession commands in flight at once (default 64). */
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

/** Due sessions of one pass: id → the deadline that passed. */
type Candidates = Map<string, number>;

const SCHEDULER_ACTOR = { kind: "system", id: "expiry-scheduler" } as const;
const RETRY_AFTER_MS = 1_000;
const WORKING_EVERY_MS = 1_000;

export function createExpiryScheduler(deps: ExpirySchedulerDeps): ExpiryScheduler {
  const { index, replica, clock } = deps;
  const concurrency = Math.max(1, deps.concurrency ?? 64);
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

  /**
   * Is this id worth a command at `now`? The replica knows about renewals the read model may not. Returns
   * its deadline (`-Infinity` when the replica has not seen it: the read model says it is overdue), or
   * undefined when it is not due.
   */
  const dueDeadline = (sessionId: string, now: number): number | undefined => {
    const entry = replica.getSession(sessionId);
    if (entry === undefined) return Number.NEGATIVE_INFINITY;
    if (entry.status !== "active") return undefined;
    const deadline = deadlineOf(entry);
    return deadline <= now ? deadline : undefined;
  };

  /** Empties the index up to `now`: due ids are returned, the rest filed again under their real deadline. */
  const dueFromIndex = (now: number, into: Candidates) => {
    for (const id of index.takeUntil(now)) {
      const entry = replica.getSession(id);
      if (entry === undefined || entry.status !== "active") continue;
      const deadline = deadlineOf(entry);
      if (deadline > now) index.add(entry.sessionId, deadline);
      else into.set(entry.sessionId, deadline);
    }
  };

  /** Read-model rows that are due at `now` and not in `seen`, into `into`. */
  const addDue = (
    rows: readonly string[],
    now: number,
    seen: ReadonlyMap<string, number>,
    into: Candidates,
  ) => {
    for (const id of rows) {
      if (seen.has(id) || into.has(id)) continue;
      const deadline = dueDeadline(id, now);
      if (deadline !== undefined) into.set(id, deadline);
    }
  };

  /**
   * Issues ExpireSession for each candidate, earliest deadline first, `concurrency` at a time; returns
   * [expired, failed]. Earliest first: those are already the latest, and a pass that takes longer than
   * the gap between ticks then delays the sessions that fell due last, not the ones waiting longest.
   */
  const expireAll = async (
    candidates: Candidates,
    tick: number | undefined,
    contextFor: (sessionId: string) => CommandContext,
    options: PassOptions,
  ): Promise<[number, number]> => {
    const queue = [...candidates].sort((x, y) => x[1] - y[1]).map(([sessionId]) => sessionId);
    let expired = 0;
    let failed = 0;
    let lastWorking = Date.now();
    let next = 0;
    const worker = async () => {
      // The previous expiry's follow-up work: at most one per worker runs alongside its next append.
      let following: Promise<unknown> | undefined;
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
          await following;
          following = result.following;
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
      await following;
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
    const context = schedulerContext(options.tick);
    const fromIndex: Candidates = new Map();
    dueFromIndex(startedAt, fromIndex);
    // The read model is the safety net for sessions this replica has not seen: its query runs while the
    // index's sessions are expired, so a slow Postgres does not hold up the rest.
    const rows = deps.readModel.overdueSessionIds(startedAt, pageSize).catch((error: unknown) => {
      // The index alone still covers every session this instance's replica knows.
      onError(error, {});
      return [] as string[];
    });
    let [expired, failed] = await expireAll(fromIndex, options.tick, context, options);
    const fromReadModel: Candidates = new Map();
    addDue(await rows, startedAt, fromIndex, fromReadModel);
    if (fromReadModel.size > 0) {
      const [more, moreFailed] = await expireAll(fromReadModel, options.tick, context, options);
      expired += more;
      failed += moreFailed;
    }
    const result: PassResult = {
      tick: options.tick,
      due: fromIndex.size + fromReadModel.size,
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
      // Every session handed to a command: read-model pages may repeat what the projection has not caught up with.
      const seen: Candidates = new Map();
      dueFromIndex(now, seen);
      let [expired] = await expireAll(seen, undefined, contextFor, {});
      total += expired;
      for (;;) {
        await deps.readModelCaughtUp?.(5_000);
        const rows = await deps.readModel.overdueSessionIds(now, pageSize);
        const page: Candidates = new Map();
        addDue(rows, now, seen, page);
        for (const [id, deadline] of page) seen.set(id, deadline);
        [expired] = await expireAll(page, undefined, contextFor, {});
        total += expired;
        // A short page was the last one; a page with nothing new means the rest is only projection lag.
        if (rows.length < pageSize || page.size === 0) break;
      }
      stats.expired += total;
      return total;
    },
    get stats() {
      return stats;
    },
  };
}
