import { Kvm } from "@nats-io/kv";
import type { Tessera } from "../../src/main.ts";
import { connectNats } from "../../test/support/services.ts";
import type { BenchEnvironment } from "./environment.ts";
import { startInProcess } from "./in-process.ts";
import { type ChildServer, startTesseraProcess, tesseraEnv } from "./processes.ts";
import { formatNumber, judge, type Result, type Target } from "./report.ts";
import type { CreatedSession } from "./sessions.ts";
import { percentile } from "./stats.ts";

/**
 * Two instances for "change on A, refused on B" figures: A is its own process, started first, so it runs
 * the projections under their leases; B runs in this process so its replica and validator can be watched
 * directly. The path measured is A's command → the log → A's KV projection → the KV watch → B's replica.
 * `extra` is configuration both instances get (e.g. a session limit the benchmark depends on).
 */
export async function twoInstances(
  env: BenchEnvironment,
  extra: Record<string, string> = {},
): Promise<{ a: ChildServer; b: Tessera }> {
  const a = await startTesseraProcess(
    "tessera-a",
    tesseraEnv({
      prefix: env.prefix,
      natsUrl: env.natsUrl,
      databaseUrl: env.database.url,
      extra: { ...extra, TESSERA_INSTANCE_ID: "bench-a" },
    }),
  );
  env.defer(() => a.stop());
  const b = await startInProcess(env, { ...extra, TESSERA_INSTANCE_ID: "bench-b" });
  return { a, b };
}

/** Resolves once B holds every session and accepts every token from memory. */
export async function untilKnownToB(b: Tessera, sessions: readonly CreatedSession[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (sessions.some((s) => b.replica.getSession(s.id) === undefined)) {
    if (Date.now() > deadline) throw new Error("instance B never saw the sessions created on A");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const s of sessions) {
    if (b.validator.validateFromMemory(s.token)?.valid !== true)
      throw new Error("B does not accept a fresh token");
  }
}

export type Trial = { refusedMs: number; answeredMs: number };

/**
 * Starts `act` (a request to A) and measures until B refuses the session's token from memory. B is woken
 * by its replica the moment the session's entry changes (waitForSession); a change that arrives another
 * way (a user-wide entry) is caught by re-checking at least every millisecond.
 */
export async function timeUntilRefused(
  b: Tessera,
  session: CreatedSession,
  act: () => Promise<void>,
): Promise<Trial> {
  const started = performance.now();
  const answered = act().then(() => performance.now() - started);
  answered.catch(() => {});
  for (;;) {
    if (b.validator.validateFromMemory(session.token)?.valid === false) break;
    if (performance.now() - started > 10_000) throw new Error(`B still accepts ${session.id} after 10 s`);
    const position = b.replica.getSession(session.id)?.position ?? 0;
    await b.replica.waitForSession(session.id, position + 1, 1);
  }
  const refusedMs = performance.now() - started;
  return { refusedMs, answeredMs: await answered };
}

/** Who holds a projection's lease (`<prefix>_leases`, key `projection.<name>`), for the report. */
export async function leaseHolder(prefix: string, name: string): Promise<string> {
  const nc = await connectNats();
  try {
    const kv = await new Kvm(nc).open(`${prefix}_leases`);
    const entry = await kv.get(`projection.${name}`);
    if (entry?.operation !== "PUT") return "nobody";
    return (entry.json() as { holder?: string }).holder ?? "unknown";
  } catch {
    return "unknown";
  } finally {
    await nc.close();
  }
}

/** A latency result from trials: p99 judged against `target`, the rest in the detail. */
export function latencyResult(options: {
  bench: string;
  title: string;
  trials: readonly Trial[];
  target: Target;
  action: string;
  notes: string[];
}): Result {
  const refused = options.trials.map((t) => t.refusedMs);
  const answered = options.trials.map((t) => t.answeredMs);
  const after = options.trials.map((t) => t.refusedMs - t.answeredMs);
  const p99 = percentile(refused, 99);
  const ms = (values: number[], p: number) => formatNumber(percentile(values, p));
  return {
    bench: options.bench,
    title: options.title,
    subject: {
      value: p99,
      unit: "ms p99",
      label: "Tessera",
      detail: `from sending the ${options.action}: p50 ${ms(refused, 50)} ms, p90 ${ms(refused, 90)} ms, p99 ${ms(refused, 99)} ms, max ${formatNumber(Math.max(...refused))} ms; A answered the ${options.action} in p50 ${ms(answered, 50)} ms / p99 ${ms(answered, 99)} ms; B refused p50 ${ms(after, 50)} ms / p99 ${ms(after, 99)} ms after A's answer (negative: before it)`,
    },
    target: options.target,
    pass: judge(options.target, p99, undefined),
    notes: options.notes,
  };
}
