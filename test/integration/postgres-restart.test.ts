import type { NatsConnection } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTessera, type Tessera } from "../../src/main.ts";
import { capturingLogger, outageConfig } from "../support/outage.ts";
import { type PrivatePostgres, startPrivatePostgres } from "../support/private-postgres.ts";
import { connectNats, NATS_URL, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { adminHeaders, eventually } from "../support/tessera.ts";

/**
 * Postgres stopped and started again under a Tessera instance that is busy creating, validating and
 * invalidating sessions. Postgres is a private server of this file (see private-postgres.ts), so stopping
 * it disturbs no other test file; NATS is the shared one, under a prefix of this file's own.
 *
 * What must hold: writes and validations only need NATS and memory, so they keep answering while Postgres
 * is down; reads that need the read model fail fast with 503 `service_unavailable` (logins, whose users
 * live in Postgres, with RFC 6749 `temporarily_unavailable`) and /readyz says `degraded` with the database down
 * (200: the instance still serves validation and writes); once Postgres is back the projections catch up to the log's end with every
 * acknowledged write in them exactly once; and nothing crashes or leaves a rejection unhandled.
 */

const UP_MS = 1_000;
const DOWN_MS = 2_500;
const BACK_MS = 1_500;
/** The longest any answer may take: a read waits ≤ 1 s for the read model, so 3 s means it hung. */
const ANSWER_BOUND_MS = 3_000;
const PASSWORD = "correct horse battery";

type Reply = { statusCode: number; headers: Record<string, unknown>; body: string; json(): unknown };
/** `stopping` and `starting` are while pg_ctl runs: answers then may go either way. */
type Phase = "up" | "stopping" | "down" | "starting" | "back";
type Acked = { id: string; userId: string; invalidated: boolean };
type Answer = {
  phase: Phase;
  settledIn: Phase;
  url: string;
  status: number;
  code?: string;
  problem?: boolean;
  ms: number;
};

let postgres: PrivatePostgres | undefined;
let tessera: Tessera | undefined;
let nc: NatsConnection | undefined;
const prefix = uniquePrefix("pgrst");
/** The password user's id. */
let pat = "";
const logLines: Array<{ level: number; msg?: string }> = [];
const rejections: unknown[] = [];
const onRejection = (reason: unknown) => rejections.push(reason);

beforeAll(async () => {
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onRejection);
  postgres = await startPrivatePostgres();
  nc = await connectNats();
  // The instance's own logger, kept in memory: the test reads what it said while Postgres was away.
  tessera = await createTessera(outageConfig({ natsUrl: NATS_URL, databaseUrl: postgres.url, prefix }), {
    logger: capturingLogger(logLines),
  });
  ({ id: pat } = await tessera.auth.directory.create({
    username: "pat",
    password: PASSWORD,
    roles: ["user"],
    groups: [],
  }));
});

afterAll(async () => {
  await tessera?.close();
  if (nc) {
    await removeNatsPrefix(nc, prefix);
    await nc.close();
  }
  await postgres?.destroy();
  process.off("unhandledRejection", onRejection);
  process.off("uncaughtException", onRejection);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a Postgres restart under load", () => {
  it("keeps writes and validation answering, fails reads fast and cleanly, and loses nothing", async () => {
    const app = requireValue(tessera).app;
    const pgServer = requireValue(postgres);
    let phase: Phase = "up";
    let running = true;
    const acked = new Map<string, Acked>();
    const createdIn: Record<Phase, number> = { up: 0, stopping: 0, down: 0, starting: 0, back: 0 };
    const wrong: string[] = [];
    const writes: Answer[] = [];
    const reads: Answer[] = [];
    const logins: Answer[] = [];
    const readiness: Array<{
      phase: Phase;
      settledIn: Phase;
      status: number;
      state: string;
      database?: boolean;
    }> = [];

    const timed = async (url: string, into: Answer[], send: () => Promise<Reply>) => {
      const started = phase;
      const t0 = performance.now();
      const response = await send();
      const answer: Answer = {
        phase: started,
        settledIn: phase,
        url,
        status: response.statusCode,
        ms: performance.now() - t0,
      };
      if (response.statusCode >= 400) {
        // problem+json says `code`; the token endpoint's RFC 6749 errors say `error`.
        const body = response.json() as { code?: string; error?: string };
        answer.code = body.code ?? body.error;
        answer.problem = String(response.headers["content-type"]).includes("application/problem+json");
      }
      into.push(answer);
      return response;
    };

    const validate = (token: string) =>
      timed("validate", writes, () =>
        app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token } }),
      );

    const writer = async (worker: number) => {
      for (let i = 1; running; i++) {
        const userId = `u${worker}-${i % 4}`;
        const created = await timed("create", writes, () =>
          app.inject({
            method: "POST",
            url: "/v1/sessions",
            headers: adminHeaders,
            payload: { user_id: userId, roles: ["user"] },
          }),
        );
        if (created.statusCode !== 201) {
          wrong.push(`create ${created.statusCode} ${created.body}`);
          continue;
        }
        const { session, token } = created.json() as { session: { id: string }; token: string };
        const entry: Acked = { id: session.id, userId, invalidated: false };
        acked.set(session.id, entry);
        createdIn[phase]++;
        const valid = await validate(token);
        if (valid.statusCode !== 200) wrong.push(`validate ${valid.statusCode} ${valid.body}`);
        if (i % 3 === 1) {
          const renewed = await timed("renew", writes, () =>
            app.inject({
              method: "POST",
              url: `/v1/sessions/${session.id}/renew`,
              headers: adminHeaders,
              payload: { ttl_seconds: 7200 },
            }),
          );
          if (renewed.statusCode !== 200) wrong.push(`renew ${renewed.statusCode} ${renewed.body}`);
        }
        if (i % 3 === 0) {
          const ended = await timed("invalidate", writes, () =>
            app.inject({ method: "DELETE", url: `/v1/sessions/${session.id}`, headers: adminHeaders }),
          );
          if (ended.statusCode !== 200) {
            wrong.push(`invalidate ${ended.statusCode} ${ended.body}`);
            continue;
          }
          entry.invalidated = true;
          const refused = await validate(token);
          if (
            refused.statusCode !== 401 ||
            (refused.json() as { reason?: string }).reason !== "invalidated"
          ) {
            wrong.push(`validate after invalidate ${refused.statusCode} ${refused.body}`);
          }
        }
        await sleep(2);
      }
    };

    const reader = async () => {
      for (let round = 0; running; round++) {
        for (const url of ["/v1/sessions?limit=5", "/v1/sessions/stats"]) {
          await timed(url, reads, () => app.inject({ method: "GET", url, headers: adminHeaders }));
        }
        // Password users live in Postgres too (one login in four rounds: argon2 is not free).
        if (round % 4 === 0) {
          const login = await timed("login", logins, () =>
            app.inject({
              method: "POST",
              url: "/v1/auth/token",
              payload: { grant_type: "password", username: "pat", password: PASSWORD },
            }),
          );
          // A login opens a session: it is acknowledged like any create.
          if (login.statusCode === 200) {
            const { session_id: id } = login.json() as { session_id: string };
            acked.set(id, { id, userId: pat, invalidated: false });
          }
        }
        const started = phase;
        const ready = await app.inject({ method: "GET", url: "/readyz" });
        const { checks, status: state } = ready.json() as {
          status: string;
          checks: Record<string, { ok: boolean }>;
        };
        readiness.push({
          phase: started,
          settledIn: phase,
          status: ready.statusCode,
          state,
          database: checks.database?.ok,
        });
        const live = await app.inject({ method: "GET", url: "/healthz" });
        if (live.statusCode !== 200) wrong.push(`healthz ${live.statusCode}`);
        await sleep(50);
      }
    };

    let backAt = 0;
    const load = Promise.all([writer(1), writer(2), writer(3), reader()]);
    try {
      await sleep(UP_MS);
      phase = "stopping";
      await pgServer.stop();
      phase = "down";
      await sleep(DOWN_MS);
      // Each phase lasts its time and, on a machine busy with other suites, until it has seen enough to
      // judge (bounded): the checks below count answers per phase.
      await eventually(
        () =>
          createdIn.down > 20 &&
          reads.filter((r) => r.phase === "down" && r.settledIn === "down").length > 4 &&
          logins.some((l) => l.phase === "down" && l.settledIn === "down") &&
          readiness.some((r) => r.phase === "down" && r.settledIn === "down"),
        20_000,
      );
      phase = "starting";
      await pgServer.start();
      phase = "back";
      backAt = performance.now();
      await sleep(BACK_MS);
      await eventually(() => reads.filter((r) => r.phase === "back").length > 4, 20_000);
    } finally {
      running = false;
      await load;
    }

    // 1. Writes and validation never failed, before, during or after the outage, and kept coming.
    expect(wrong).toEqual([]);
    expect(createdIn.down).toBeGreaterThan(20);
    expect(writes.filter((w) => w.status >= 500)).toEqual([]);
    expect(Math.max(...writes.map((w) => w.ms))).toBeLessThan(ANSWER_BOUND_MS);

    // 2. Reads: 200 while Postgres is up, a fast 503 service_unavailable while it is down, never a hang.
    for (const read of reads) {
      expect(read.ms, read.url).toBeLessThan(ANSWER_BOUND_MS);
      if (read.status !== 200) {
        expect(read).toMatchObject({ status: 503, code: "service_unavailable", problem: true });
      }
    }
    const whileDown = reads.filter((r) => r.phase === "down" && r.settledIn === "down");
    expect(whileDown.length).toBeGreaterThan(4);
    expect(whileDown.every((r) => r.status === 503)).toBe(true);
    expect(reads.filter((r) => r.phase === "up" && r.settledIn === "up").every((r) => r.status === 200)).toBe(
      true,
    );
    // Once the server is back no read may fail on a connection the restart killed: the pool dropped
    // those when they died.
    const after = reads.filter((r) => r.phase === "back");
    expect(after.length).toBeGreaterThan(4);
    expect(after.every((r) => r.status === 200)).toBe(true);
    // Logins read the user from Postgres: RFC 6749 temporarily_unavailable while it is away.
    for (const login of logins) {
      expect(login.ms).toBeLessThan(ANSWER_BOUND_MS);
      if (login.status !== 200) expect(login).toMatchObject({ status: 503, code: "temporarily_unavailable" });
    }
    expect(
      logins.filter((l) => l.phase === "up" && l.settledIn === "up").every((l) => l.status === 200),
    ).toBe(true);
    expect(logins.some((l) => l.phase === "down" && l.settledIn === "down" && l.status === 503)).toBe(true);
    expect(logins.filter((l) => l.phase === "back").every((l) => l.status === 200)).toBe(true);
    const readyDown = readiness.filter((r) => r.phase === "down" && r.settledIn === "down");
    expect(readyDown.length).toBeGreaterThan(0);
    // Degraded, not out of rotation: validation and writes still work (TESSERA_READY_REQUIRES=nats).
    expect(readyDown.every((r) => r.status === 200 && r.state === "degraded" && r.database === false)).toBe(
      true,
    );

    // 3. The read models catch up to the log's end, with every acknowledged write exactly once.
    const instance = requireValue(tessera);
    const end = await instance.log.lastPosition();
    const db = new pg.Client({ connectionString: pgServer.url });
    await db.connect();
    try {
      await eventually(async () => {
        const { rows } = await db.query<{ name: string; position: string }>(
          "select name, position from projection_checkpoints where name in ('sessions', 'audit')",
        );
        return rows.length === 2 && rows.every((row) => Number(row.position) === end);
      }, 15_000);
      // The runners retry on a backoff capped at 5 s; a projection that gave up would never get here.
      expect(performance.now() - backAt).toBeLessThan(10_000);

      const { rows: sessions } = await db.query<{
        id: string;
        user_id: string;
        status: string;
        end_reason: string | null;
        ended_at: Date | null;
      }>("select id, user_id, status, end_reason, ended_at from sessions");
      expect(sessions).toHaveLength(acked.size);
      for (const row of sessions) {
        const expected = acked.get(row.id);
        expect(expected, row.id).toBeDefined();
        expect(row.user_id).toBe(expected?.userId);
        if (expected?.invalidated) {
          expect(row).toMatchObject({ status: "invalidated", end_reason: "revoked_by_admin" });
          expect(row.ended_at).not.toBeNull();
        } else {
          expect(row).toMatchObject({ status: "active", end_reason: null, ended_at: null });
        }
      }

      const { rows: audit } = await db.query<{ position: string; type: string; session_id: string | null }>(
        "select position, type, session_id from audit_events order by position",
      );
      expect(audit.map((row) => Number(row.position))).toEqual(Array.from({ length: end }, (_, i) => i + 1));
      const created = audit.filter((row) => row.type === "SessionCreated").map((row) => row.session_id);
      const invalidated = audit.filter((row) => row.type === "SessionInvalidated").map((r) => r.session_id);
      expect(new Set(created).size).toBe(created.length);
      expect(new Set(created)).toEqual(new Set(acked.keys()));
      expect(new Set(invalidated).size).toBe(invalidated.length);
      expect(new Set(invalidated)).toEqual(
        new Set([...acked.values()].filter((s) => s.invalidated).map((s) => s.id)),
      );
    } finally {
      await db.end();
    }

    // The stored answers agree once it is back: the listing's total is every acknowledged create.
    const listed = await app.inject({ method: "GET", url: "/v1/sessions?status=all", headers: adminHeaders });
    expect(listed.statusCode).toBe(200);
    expect((listed.json() as { total: number }).total).toBe(acked.size);
    expect((await app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(200);

    // 4. Nothing crashed or went unhandled; the projections said they were retrying, and carried on.
    expect(rejections).toEqual([]);
    expect(logLines.filter((line) => line.level >= 50)).toEqual([]);
    expect(logLines.some((line) => line.msg === "projection retrying")).toBe(true);
  }, 90_000);
});

function requireValue<T>(value: T | undefined): T {
  if (value === undefined) throw new Error("beforeAll did not finish");
  return value;
}
