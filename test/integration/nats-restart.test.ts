import { randomBytes } from "node:crypto";
import pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordedEvent } from "../../src/domain/events.ts";
import { formatToken } from "../../src/domain/tokens.ts";
import { createTessera, type Tessera } from "../../src/main.ts";
import { capturingLogger, outageConfig } from "../support/outage.ts";
import { type PrivateNats, startPrivateNats } from "../support/private-nats.ts";
import { createTestDatabase, type TestDatabase, uniquePrefix } from "../support/services.ts";
import { adminHeaders, eventually } from "../support/tessera.ts";

/**
 * NATS stopped and started again under two Tessera instances (one prefix, one database, as a scaled-out
 * deployment) that are busy creating, validating and invalidating sessions. NATS is a private server of
 * this file (private-nats.ts) restarted on the same JetStream store, so its streams and buckets survive and
 * no other test file is disturbed; Postgres is the shared one, with a fresh database.
 *
 * What must hold: every acknowledged write is in the log exactly once and reaches the read model and both
 * instances' memory; while NATS is away writes fail fast with 503 `service_unavailable` and validation of
 * tokens an instance already holds keeps answering from memory; /readyz says NATS is down (503) and then
 * ready again; once NATS is back the KV watch and the JetStream consumers carry on by themselves; an
 * Idempotency-Key retried after a 503 yields exactly one session; nothing crashes or goes unhandled.
 */

const UP_MS = 1_200;
const DOWN_MS = 2_500;
const BACK_MS = 1_500;
/**
 * The longest any answer may take. A request in flight when the server went away waits out the NATS
 * operations it had sent before its client noticed the closed socket, each up to its timeout (5 s, the
 * adapters' default): a write reads the session's stream, then appends, so two of them when the client is
 * slow to notice (seen in CI: 10.0 s for an invalidate). It is then answered 503 and not retried while the
 * connection is down; 2 s of slack for a loaded machine. (Before the fail-fast, a request made while the
 * connection was down waited out the same timeout, up to three times for a publish.)
 */
const IN_FLIGHT_BOUND_MS = 12_000;
/**
 * A request that arrives while the connection is known to be down is answered promptly: in milliseconds,
 * or for a write once the grace for a reconnect (DISCONNECTED_GRACE_MS, 500 ms) has passed.
 */
const FAST_MS = 2_000;
/** How long the KV watch may take to carry a change to the other instance (milliseconds when live). */
const WATCH_BOUND_MS = 3_000;

type Reply = { statusCode: number; headers: Record<string, unknown>; body: string; json(): unknown };
/** `stopping` and `starting` are while the server exits or boots: answers then may go either way. */
type Phase = "up" | "stopping" | "down" | "starting" | "back";
type Name = "a" | "b";
type Acked = {
  id: string;
  userId: string;
  token: string;
  key: string;
  /** Its DELETE answered 200. */
  invalidated: boolean;
  /** Its DELETE answered 503: the append may still have landed once NATS came back. */
  maybeInvalidated: boolean;
  /**
   * Its DELETE was sent. Until it is answered the session may already be ended in every replica (the
   * append landed, the answer is still on its way — up to a timeout when NATS went away meanwhile).
   */
  invalidating: boolean;
};
type Answer = {
  on: Name;
  what: string;
  phase: Phase;
  settledIn: Phase;
  status: number;
  code?: string;
  problem?: boolean;
  ms: number;
};

let nats: PrivateNats | undefined;
let database: TestDatabase | undefined;
const instances: Partial<Record<Name, Tessera>> = {};
const prefix = uniquePrefix("natsrst");
const logLines: Array<{ level: number; msg?: string; instance: Name }> = [];
const rejections: unknown[] = [];
const onRejection = (reason: unknown) => rejections.push(reason);

async function startInstance(name: Name, natsUrl: string, databaseUrl: string): Promise<Tessera> {
  // The instance's own logger, kept in memory: the test reads what it said while NATS was away.
  return createTessera(outageConfig({ natsUrl, databaseUrl, prefix }), {
    logger: capturingLogger(logLines, { instance: name }),
  });
}

beforeAll(async () => {
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onRejection);
  nats = await startPrivateNats();
  database = await createTestDatabase();
  instances.a = await startInstance("a", nats.url, database.url);
  instances.b = await startInstance("b", nats.url, database.url);
});

afterAll(async () => {
  await instances.a?.close();
  await instances.b?.close();
  // The streams and buckets live in the private server's store, removed with it.
  await nats?.destroy();
  await database?.drop();
  process.off("unhandledRejection", onRejection);
  process.off("uncaughtException", onRejection);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a NATS restart under two loaded instances", () => {
  it("fails writes fast and cleanly, keeps validating from memory, resumes by itself and loses nothing", async () => {
    const a = requireValue(instances.a);
    const b = requireValue(instances.b);
    const server = requireValue(nats);
    const byName: Record<Name, Tessera> = { a, b };
    const other = (name: Name): Name => (name === "a" ? "b" : "a");
    let phase: Phase = "up";
    let running = true;
    const acked = new Map<string, Acked>();
    /** Creates answered 503: retried with the same Idempotency-Key once NATS is back. */
    const unanswered: Array<{ key: string; userId: string; on: Name }> = [];
    const wrong: string[] = [];
    const writes: Answer[] = [];
    const validations: Answer[] = [];
    const probes: Answer[] = [];
    const readiness: Array<Answer & { state: string; nats?: boolean; database?: boolean }> = [];
    /** Per instance, the live sessions it held in memory when NATS went away. */
    const heldAtStop: Record<Name, Acked[]> = { a: [], b: [] };
    let partialViews = 0;

    const timed = async (on: Name, what: string, into: Answer[], send: () => Promise<Reply>) => {
      const started = phase;
      const t0 = performance.now();
      const response = await send();
      const answer: Answer = {
        on,
        what,
        phase: started,
        settledIn: phase,
        status: response.statusCode,
        ms: performance.now() - t0,
      };
      if (response.statusCode >= 400) {
        answer.code = (response.json() as { code?: string }).code;
        answer.problem = String(response.headers["content-type"]).includes("application/problem+json");
      }
      into.push(answer);
      return response;
    };
    const create = (on: Name, key: string, userId: string, into = writes) =>
      timed(on, "create", into, () =>
        byName[on].app.inject({
          method: "POST",
          url: "/v1/sessions",
          headers: { ...adminHeaders, "idempotency-key": key },
          payload: { user_id: userId, roles: ["user"] },
        }),
      );
    const invalidate = (on: Name, id: string) =>
      timed(on, "invalidate", writes, () =>
        byName[on].app.inject({ method: "DELETE", url: `/v1/sessions/${id}`, headers: adminHeaders }),
      );
    const validate = (on: Name, token: string, into = validations) =>
      timed(on, "validate", into, () =>
        byName[on].app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token } }),
      );
    const remember = (created: Reply, key: string, userId: string) => {
      const { session, token } = created.json() as { session: { id: string }; token: string };
      const entry: Acked = {
        id: session.id,
        userId,
        token,
        key,
        invalidated: false,
        maybeInvalidated: false,
        invalidating: false,
      };
      acked.set(session.id, entry);
      return entry;
    };

    const writer = async (on: Name, worker: number) => {
      for (let i = 1; running; i++) {
        const key = `k-${on}-${worker}-${i}`;
        const userId = `u-${on}${worker}-${i % 4}`;
        const created = await create(on, key, userId);
        if (created.statusCode === 503) {
          unanswered.push({ key, userId, on });
          // As a client told Retry-After would, if less patiently.
          await sleep(100);
        } else if (created.statusCode !== 201) {
          wrong.push(`create ${created.statusCode} ${created.body}`);
        } else {
          const entry = remember(created, key, userId);
          // The instance that wrote it holds it at once, with or without NATS.
          const valid = await validate(on, entry.token);
          if (valid.statusCode !== 200) wrong.push(`validate own ${valid.statusCode} ${valid.body}`);
          if (i % 3 === 0) {
            // Ended on the other instance, which decides on the log, not on its memory.
            const ender = other(on);
            entry.invalidating = true;
            const ended = await invalidate(ender, entry.id);
            if (ended.statusCode === 200) {
              entry.invalidated = true;
              const refused = await validate(ender, entry.token);
              if (refused.statusCode !== 401)
                wrong.push(`validate ended ${refused.statusCode} ${refused.body}`);
            } else if (ended.statusCode === 503) {
              // Failed at once, or timed out in flight and may still land: the log says which below.
              entry.maybeInvalidated = true;
            } else {
              wrong.push(`invalidate ${ended.statusCode} ${ended.body}`);
            }
          }
        }
        await sleep(5);
      }
    };

    /**
     * Clients that arrive while NATS is away. The writers above are mostly caught with a request in
     * flight when the server goes (answered once it times out), so these are the ones that show how a
     * request made while the connection is down is answered.
     */
    const latecomer = async (on: Name) => {
      for (let i = 1; running; i++) {
        if (phase === "down") {
          const key = `k-${on}-late-${i}`;
          const userId = `u-${on}-late`;
          const created = await create(on, key, userId);
          if (created.statusCode === 503) unanswered.push({ key, userId, on });
          // A write waits up to DISCONNECTED_GRACE_MS for the connection: one that began just before the
          // server came back may land, and is then acknowledged like any other.
          else if (created.statusCode === 201 && phase !== "down") remember(created, key, userId);
          else wrong.push(`create while down ${created.statusCode} ${created.body}`);
        }
        await sleep(50);
      }
    };

    /** While NATS is away: live sessions the instance held in memory keep validating there. */
    const holder = async (on: Name) => {
      for (let i = 0; running; i++) {
        const held = heldAtStop[on].filter((s) => !s.invalidating);
        const session = held[i % Math.max(1, held.length)];
        if (session !== undefined && phase === "down") {
          const valid = await validate(on, session.token);
          const body = valid.json() as {
            valid?: boolean;
            session?: { id: string; status: string; client: unknown; metadata: unknown };
          };
          if (valid.statusCode !== 200 || body.session?.id !== session.id) {
            wrong.push(`validate held ${on} ${valid.statusCode} ${valid.body}`);
          }
          // A session this instance has not cached is shown from its validation entry, and said to be.
          if (valid.headers["tessera-session-view"] === "partial") {
            partialViews++;
            const { status, client, metadata } = body.session ?? {};
            if (status !== "active" || client !== null || JSON.stringify(metadata) !== "{}")
              wrong.push(`partial view ${valid.body}`);
          }
        }
        await sleep(5);
      }
    };

    /** A plausible token of a session nobody holds: only NATS (KV, then the log) could answer it. */
    const prober = async (on: Name) => {
      while (running) {
        if (phase === "down") {
          const token = formatToken("session", uuidv7(), randomBytes(32).toString("base64url"));
          await validate(on, token, probes);
        }
        await sleep(100);
      }
    };

    const readinessPoller = async (on: Name) => {
      while (running) {
        const started = phase;
        const t0 = performance.now();
        const ready = await byName[on].app.inject({ method: "GET", url: "/readyz" });
        const { checks, status: state } = ready.json() as {
          status: string;
          checks: Record<string, { ok: boolean }>;
        };
        readiness.push({
          on,
          what: "readyz",
          phase: started,
          settledIn: phase,
          status: ready.statusCode,
          ms: performance.now() - t0,
          state,
          nats: checks.nats?.ok,
          database: checks.database?.ok,
        });
        await sleep(100);
      }
    };

    const load = Promise.all([
      ...(["a", "b"] as const).flatMap((on) => [
        writer(on, 1),
        writer(on, 2),
        latecomer(on),
        holder(on),
        prober(on),
        readinessPoller(on),
      ]),
    ]);
    try {
      await sleep(UP_MS);
      // Enough live sessions for both instances to hold (bounded, for a busy machine).
      await eventually(() => [...acked.values()].filter((s) => !s.invalidated).length > 40, 20_000);
      for (const name of ["a", "b"] as const) {
        heldAtStop[name] = [...acked.values()].filter(
          (s) => byName[name].validator.validateFromMemory(s.token)?.valid === true,
        );
      }
      phase = "stopping";
      await server.stop();
      // Each client notices its closed socket a moment after the server has exited (later on a loaded
      // machine); a request sent before that is in flight and waits for its timeout. "down" starts once
      // both instances know.
      await eventually(async () => {
        const nats = await Promise.all((["a", "b"] as const).map((on) => natsCheck(byName[on])));
        return nats.every((ok) => ok === false);
      }, 5_000).catch(() => {
        throw new Error(
          "/readyz did not report NATS down on both instances within 5 s of the server exiting",
        );
      });
      phase = "down";
      await sleep(DOWN_MS);
      // And, on a machine busy with other suites, until it has seen enough to judge (bounded): the checks
      // below count answers of this phase.
      await eventually(
        () =>
          writes.filter((w) => w.phase === "down" && w.settledIn === "down").length > 8 &&
          validations.filter((v) => v.phase === "down" && v.settledIn === "down").length > 50 &&
          probes.filter((p) => p.phase === "down").length > 4 &&
          readiness.filter((r) => r.phase === "down" && r.settledIn === "down").length > 4 &&
          partialViews > 0,
        20_000,
      );
      phase = "starting";
      await server.start();
      phase = "back";
      await sleep(BACK_MS);
    } finally {
      running = false;
      await load;
    }
    const report = () =>
      JSON.stringify({
        writes: summarize(writes),
        validations: summarize(validations),
        probes: summarize(probes),
        readiness: summarize(readiness),
      });

    // 1. Before and after the outage, and for what was in memory during it, nothing went wrong.
    expect(wrong, report()).toEqual([]);
    expect(heldAtStop.a.length).toBeGreaterThan(20);
    expect(heldAtStop.b.length).toBeGreaterThan(20);

    // 2. While NATS is away answers are fast and clean. A request in flight when the server went away
    //    waits at most its NATS operations' timeouts (5 s each, two for a write) before its 503;
    //    one that arrives while the connection is known to be down is answered promptly: a read at once,
    //    a write once the grace for a reconnect has passed (FAST_MS is generous for a loaded machine).
    for (const answer of [...writes, ...validations, ...probes, ...readiness]) {
      // Never a 500: a 5xx is a 503, and a problem+json `service_unavailable` one.
      expect(answer.status === 503 || answer.status < 500, report()).toBe(true);
      expect(answer.ms, `${answer.what} ${answer.phase}`).toBeLessThan(IN_FLIGHT_BOUND_MS);
      if (answer.status === 503 && answer.what !== "readyz") {
        expect(answer).toMatchObject({ code: "service_unavailable", problem: true });
      }
    }
    // Those that settled before the server was started again (a later one may have ridden out the grace).
    const writesWhileDown = writes.filter((w) => w.phase === "down" && w.settledIn === "down");
    expect(writesWhileDown.length, report()).toBeGreaterThan(8);
    for (const write of writesWhileDown) {
      expect(write, report()).toMatchObject({ status: 503, code: "service_unavailable", problem: true });
      expect(write.ms).toBeLessThan(FAST_MS);
    }
    // Held tokens answered from memory (checked in `holder`), quickly and many times.
    expect(partialViews, report()).toBeGreaterThan(0);
    const heldWhileDown = validations.filter((v) => v.phase === "down" && v.settledIn === "down");
    expect(heldWhileDown.length, report()).toBeGreaterThan(50);
    expect(
      heldWhileDown.every((v) => v.status === 200 && v.ms < FAST_MS),
      report(),
    ).toBe(true);
    // A token only NATS could judge: 503 at once, never a 500 or a wait.
    const probesWhileDown = probes.filter((p) => p.phase === "down");
    expect(probesWhileDown.length, report()).toBeGreaterThan(4);
    for (const probe of probesWhileDown) {
      expect(probe, report()).toMatchObject({ status: 503, code: "service_unavailable", problem: true });
      expect(probe.ms).toBeLessThan(FAST_MS);
    }
    // Readiness: ready before; NATS (not the database) down during, at once; the polls went on.
    expect(
      readiness
        .filter((r) => r.phase === "up" && r.settledIn === "up")
        .every((r) => r.status === 200 && r.state === "ready"),
    ).toBe(true);
    const readyDown = readiness.filter((r) => r.phase === "down" && r.settledIn === "down");
    expect(readyDown.length, report()).toBeGreaterThan(4);
    for (const ready of readyDown) {
      expect(ready, report()).toMatchObject({ status: 503, state: "not_ready", nats: false, database: true });
      expect(ready.ms).toBeLessThan(FAST_MS);
    }

    // 3. Back: both instances say ready again by themselves (the client reconnects after ~1 s).
    for (const on of ["a", "b"] as const) {
      await eventually(
        async () => (await byName[on].app.inject({ method: "GET", url: "/readyz" })).statusCode === 200,
        15_000,
      );
    }

    // The key's contract: a create that got 503, retried with its Idempotency-Key (on the other
    // instance, as a load balancer might), yields one session; retried again, the same one.
    const retry = async ({ key, userId, on }: (typeof unanswered)[number]) => {
      const retried = await create(other(on), key, userId);
      expect(retried.statusCode, retried.body).toBe(201);
      const entry = remember(retried, key, userId);
      const again = await create(on, key, userId);
      expect(again.statusCode, again.body).toBe(201);
      expect(again.headers["idempotent-replayed"]).toBe("true");
      expect((again.json() as { session: { id: string }; token: string }).session.id).toBe(entry.id);
      expect((again.json() as { token: string }).token).toBe(entry.token);
    };
    for (let i = 0; i < unanswered.length; i += 8) await Promise.all(unanswered.slice(i, i + 8).map(retry));

    // The KV watch is live again on both sides (not just validation's KV/log fall-back): a session
    // created on A reaches B's memory, and B's invalidation of it reaches A's, by the watch alone.
    const fresh = await create("a", "k-after-restart", "u-after");
    expect(fresh.statusCode, fresh.body).toBe(201);
    const after = remember(fresh, "k-after-restart", "u-after");
    const reachedB = await eventually(() => b.replica.getSession(after.id) !== undefined, WATCH_BOUND_MS);
    expect((await validate("b", after.token)).statusCode).toBe(200);
    expect(a.validator.validateFromMemory(after.token)?.valid).toBe(true);
    const ended = await invalidate("b", after.id);
    expect(ended.statusCode, ended.body).toBe(200);
    after.invalidated = true;
    const reachedA = await eventually(
      () => a.validator.validateFromMemory(after.token)?.valid === false,
      WATCH_BOUND_MS,
    );
    expect(await validate("a", after.token).then((r) => r.json())).toEqual({
      valid: false,
      reason: "invalidated",
    });
    // And at once on B for a session created on A just now, whichever path B takes.
    const another = await create("a", "k-after-restart-2", "u-after");
    expect(another.statusCode).toBe(201);
    const second = remember(another, "k-after-restart-2", "u-after");
    expect((await validate("b", second.token)).statusCode).toBe(200);

    // 4. The log holds every acknowledged create exactly once, and nothing else: every create that got
    //    a 503 was retried above and answered with the session the log holds for its key.
    const end = await a.log.lastPosition();
    const events: RecordedEvent[] = [];
    const follower = a.log.follow({ from: 1, batchSize: 512 }, async (batch) => {
      events.push(...batch);
    });
    await eventually(() => events.length >= end, 10_000);
    await follower.stop();
    const createdIds = events.filter((e) => e.type === "SessionCreated").map((e) => e.stream.id);
    expect(new Set(createdIds).size).toBe(createdIds.length);
    expect(new Set(createdIds)).toEqual(new Set(acked.keys()));
    expect(new Set([...acked.values()].map((s) => s.key)).size).toBe(acked.size);
    const invalidatedIds = new Set(
      events.filter((e) => e.type === "SessionInvalidated").map((e) => e.stream.id),
    );
    for (const session of acked.values()) {
      if (session.invalidated) expect(invalidatedIds.has(session.id), session.id).toBe(true);
      else if (!session.maybeInvalidated) expect(invalidatedIds.has(session.id), session.id).toBe(false);
    }

    // Every acknowledged session validates on both instances as the log says (200, or 401 if ended).
    for (const on of ["a", "b"] as const) {
      await eventually(async () => {
        for (const session of acked.values()) {
          const expected = invalidatedIds.has(session.id) ? 401 : 200;
          if (
            (
              await byName[on].app.inject({
                method: "POST",
                url: "/v1/sessions/validate",
                payload: { token: session.token },
              })
            ).statusCode !== expected
          )
            return false;
        }
        return true;
      }, 10_000);
    }

    // The JetStream consumers resumed: the Postgres read model reaches the log's end, every acked
    // session once, ended exactly when the log says so.
    const db = new pg.Client({ connectionString: requireValue(database).url });
    await db.connect();
    try {
      const last = await a.log.lastPosition();
      await eventually(async () => {
        const { rows } = await db.query<{ position: string }>(
          "select position from projection_checkpoints where name in ('sessions', 'audit')",
        );
        return rows.length === 2 && rows.every((row) => Number(row.position) >= last);
      }, 15_000);
      const { rows: sessions } = await db.query<{ id: string; user_id: string; status: string }>(
        "select id, user_id, status from sessions",
      );
      expect(sessions).toHaveLength(acked.size);
      for (const row of sessions) {
        const expected = acked.get(row.id);
        expect(expected, row.id).toBeDefined();
        expect(row.user_id).toBe(expected?.userId);
        expect(row.status).toBe(invalidatedIds.has(row.id) ? "invalidated" : "active");
      }
      const { rows: audit } = await db.query<{ position: string }>(
        "select position from audit_events order by position",
      );
      expect(audit.map((row) => Number(row.position))).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    } finally {
      await db.end();
    }

    // 5. Nothing crashed or went unhandled, and nothing was logged as an error (warnings are expected:
    //    leases, ticks and projections retry while NATS is away).
    expect(rejections).toEqual([]);
    expect(logLines.filter((line) => line.level >= 50)).toEqual([]);
    console.info(
      `nats-restart: ${acked.size} sessions, ${writesWhileDown.length} writes and ${heldWhileDown.length} held validations while down, ${unanswered.length} retried keys; watch B ${Math.round(reachedB)} ms, A ${Math.round(reachedA)} ms`,
    );
  }, 60_000);
});

/** What the instance's /readyz says of NATS. */
async function natsCheck(instance: Tessera): Promise<boolean | undefined> {
  const ready = await instance.app.inject({ method: "GET", url: "/readyz" });
  return (ready.json() as { checks: Record<string, { ok: boolean }> }).checks.nats?.ok;
}

function summarize(answers: Answer[]) {
  const groups: Record<string, { n: number; maxMs: number }> = {};
  for (const answer of answers) {
    const key = `${answer.on} ${answer.what} ${answer.phase}->${answer.settledIn} ${answer.status} ${answer.code ?? ""}`;
    const group = groups[key] ?? { n: 0, maxMs: 0 };
    group.n++;
    group.maxMs = Math.max(group.maxMs, Math.round(answer.ms));
    groups[key] = group;
  }
  return groups;
}

function requireValue<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("beforeAll did not finish");
  return value;
}
