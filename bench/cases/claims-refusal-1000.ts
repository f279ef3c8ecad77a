import type { Tessera } from "../../src/main.ts";
import type { Benchmark } from "../lib/bench.ts";
import { withEnvironment } from "../lib/environment.ts";
import { httpJson } from "../lib/http.ts";
import { BENCH_ADMIN_KEY } from "../lib/processes.ts";
import { latencyResult, leaseHolder, type Trial, twoInstances, untilKnownToB } from "../lib/propagation.ts";
import { formatNumber, type Result, type Target } from "../lib/report.ts";
import { type CreatedSession, createSessionsOverHttp } from "../lib/sessions.ts";
import { percentile } from "../lib/stats.ts";
import { recyclingUnavailable } from "./claims-refusal.ts";

const SESSIONS = 1_000;
const SESSIONS_TEXT = formatNumber(SESSIONS);
const REPEATS = 10;
const WARMUP = 1;
const TARGET: Target = { kind: "none" };
/** How long a repeat may take to see every session refused, and every SessionRecycled in the log. */
const REFUSAL_TIMEOUT_MS = 10_000;
const FANOUT_TIMEOUT_MS = 120_000;

type Repeat = Trial & { firstRefusedMs: number; fannedOutMs: number };

/**
 * Issue 5, at scale: one user with 1,000 live sessions (all created on instance A), `PUT
 * /v1/users/{id}/claims` on A, until instance B's in-memory validator refuses *every one* of the 1,000
 * tokens — the figure is the moment the last one is refused. Separately, until the recycle process
 * manager's fan-out is complete: all 1,000 SessionRecycled events in the log (seen by a follower of the
 * log in B's process). One fresh user per repeat, so each repeat starts from the same state.
 */
export const claimsRefusal1000: Benchmark = {
  name: "claims-refusal-1000",
  issue: 5,
  description: `PUT /v1/users/{id}/claims on A until B refuses all ${SESSIONS_TEXT} sessions of the user; the fan-out's end`,
  unavailable: recyclingUnavailable,
  run: (options) =>
    withEnvironment("claimsbulk", async (env) => {
      // The default is no per-user limit; pinned because 1,000 sessions of one user depend on it (with a
      // limit, `reject` would fail the creates and `evict_oldest` would end most of them).
      const { a, b } = await twoInstances(env, { TESSERA_MAX_SESSIONS_PER_USER: "0" });
      const repeats = Math.max(3, Math.round(REPEATS * options.scale));
      const measured: Repeat[] = [];
      for (let r = 0; r < repeats + WARMUP; r++) {
        const sessions = await createSessionsOverHttp(a.url, SESSIONS, {
          users: 1,
          userPrefix: `claims-bulk-${r}-`,
        });
        await untilKnownToB(b, sessions);
        const repeat = await timeUntilAllRefused(b, sessions, async () => {
          const userId = sessions[0]?.userId ?? "";
          const response = await httpJson(`${a.url}/v1/users/${encodeURIComponent(userId)}/claims`, "PUT", {
            headers: { "x-admin-key": BENCH_ADMIN_KEY },
            body: { roles: ["viewer"], groups: [] },
          });
          if (response.status !== 200) throw new Error(`PUT claims answered ${response.status}`);
        });
        options.log(
          `  repeat ${r + 1}/${repeats + WARMUP}${r < WARMUP ? " (warm-up)" : ""}: last of ${SESSIONS_TEXT} refused on B after ${formatNumber(repeat.refusedMs)} ms, fan-out complete after ${formatNumber(repeat.fannedOutMs)} ms`,
        );
        if (r >= WARMUP) measured.push(repeat);
      }
      const first = measured.map((t) => t.firstRefusedMs);
      const spread = measured.map((t) => t.refusedMs - t.firstRefusedMs);
      const notes = [
        `validation projection lease held by ${await leaseHolder(env.prefix, "validation")}, recycle process manager by ${await leaseHolder(env.prefix, "recycle")} (A = bench-a, B = bench-b)`,
        `first of the ${SESSIONS_TEXT} tokens refused on B: p50 ${ms(first, 50)} ms; last − first: p50 ${ms(spread, 50)} ms, max ${ms(spread, 100)} ms (checking the remaining tokens included)`,
      ];
      return [
        latencyResult({
          bench: "claims-refusal-1000",
          title: `claims change on instance A → instance B refuses the last of the user's ${SESSIONS_TEXT} tokens, ${measured.length} repeats`,
          trials: measured,
          target: TARGET,
          action: "PUT claims",
          notes,
        }),
        fanOutResult(measured),
      ];
    }),
};

const ms = (values: number[], p: number) => formatNumber(percentile(values, p));

function fanOutResult(repeats: readonly Repeat[]): Result {
  const done = repeats.map((t) => t.fannedOutMs);
  return {
    bench: "claims-refusal-1000",
    title: `claims change on instance A → all ${SESSIONS_TEXT} SessionRecycled in the log (recycle fan-out), ${repeats.length} repeats`,
    subject: {
      value: percentile(done, 99),
      unit: "ms p99",
      label: "Tessera",
      detail: `from sending the PUT: p50 ${ms(done, 50)} ms, p99 ${ms(done, 99)} ms, max ${formatNumber(Math.max(...done))} ms (${formatNumber(SESSIONS / (percentile(done, 50) / 1000))} sessions/s at p50)`,
    },
    target: TARGET,
    pass: undefined,
    notes: ["seen by a follower of the log in B's process; includes the delivery to it"],
  };
}

/**
 * Starts `act` and measures until B refuses every token from memory, and until the log holds a
 * SessionRecycled for every session. Refusal is monotonic (a refused session never validates again), so
 * the tokens are checked in order and each is checked until it is refused: while one still validates, the
 * loop waits for that session's entry to change or 1 ms (a user-wide entry refuses them all at once
 * without touching any session's entry), so an idle wait costs one validation, not 1,000.
 */
async function timeUntilAllRefused(
  b: Tessera,
  sessions: readonly CreatedSession[],
  act: () => Promise<void>,
): Promise<Repeat> {
  const fanOut = await recycledInLog(b, sessions);
  try {
    const started = performance.now();
    fanOut.start(started);
    const answered = act().then(() => performance.now() - started);
    answered.catch(() => {});
    let next = 0;
    let firstRefusedMs: number | undefined;
    for (;;) {
      for (; next < sessions.length; next++) {
        const outcome = b.validator.validateFromMemory(tokenAt(sessions, next));
        if (outcome?.valid !== false) break;
        // Any other reason would mean the figure measures something else than recycling.
        if (outcome.reason !== "recycled") throw new Error(`B refused a session as ${outcome.reason}`);
        firstRefusedMs ??= performance.now() - started;
      }
      if (next === sessions.length) break;
      if (performance.now() - started > REFUSAL_TIMEOUT_MS) {
        throw new Error(
          `B still accepts ${sessions.length - next} of ${sessions.length} sessions after ${REFUSAL_TIMEOUT_MS} ms`,
        );
      }
      const pending = sessions[next]?.id ?? "";
      await b.replica.waitForSession(pending, (b.replica.getSession(pending)?.position ?? 0) + 1, 1);
    }
    const refusedMs = performance.now() - started;
    return {
      refusedMs,
      firstRefusedMs: firstRefusedMs ?? refusedMs,
      answeredMs: await answered,
      fannedOutMs: await fanOut.done(),
    };
  } finally {
    await fanOut.stop();
  }
}

const tokenAt = (sessions: readonly CreatedSession[], i: number) => sessions[i]?.token ?? "";

/** Follows the log from its current end, counting the sessions' SessionRecycled events. */
async function recycledInLog(b: Tessera, sessions: readonly CreatedSession[]) {
  const waiting = new Set(sessions.map((s) => s.id));
  const userId = sessions[0]?.userId;
  let startedAt = 0;
  let finish: (ms: number) => void = () => {};
  let fail: (error: unknown) => void = () => {};
  const complete = new Promise<number>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  complete.catch(() => {});
  const end = await b.log.lastPosition();
  const follower = b.log.follow({ from: end + 1, batchSize: 1_000 }, async (batch) => {
    for (const event of batch) {
      if (event.type === "SessionRecycled" && event.data.userId === userId)
        waiting.delete(event.data.sessionId);
    }
    if (waiting.size === 0) finish(performance.now() - startedAt);
  });
  follower.done.catch(fail);
  return {
    start(at: number) {
      startedAt = at;
    },
    async done(): Promise<number> {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `${waiting.size} of ${sessions.length} sessions not recycled in the log after ${FANOUT_TIMEOUT_MS} ms`,
              ),
            ),
          FANOUT_TIMEOUT_MS,
        );
      });
      try {
        return await Promise.race([complete, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    stop: () => follower.stop(),
  };
}
