import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventEncodeError } from "../../src/adapters/codec/event-codec.ts";
import { createEventSubjects } from "../../src/adapters/jetstream/subjects.ts";
import { createAuditReadModel } from "../../src/adapters/postgres/audit-read-model.ts";
import { type DatabaseHandle, openDatabase } from "../../src/adapters/postgres/database.ts";
import { POSTGRES_PROJECTIONS, rebuildProjection } from "../../src/adapters/postgres/rebuild.ts";
import { type SessionCreated, sessionStream } from "../../src/domain/events.ts";
import type { Tessera } from "../../src/main.ts";
import { waitForCheckpoint } from "../../src/projections/runner.ts";
import { metadata, newSessionId, sessionCreated, sessionTouched } from "../contract/event-fixtures.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, startDistributed } from "../support/tessera.ts";
import { snapshot } from "../time/read-models.ts";

/**
 * A SessionCreated holding NUL and unpaired surrogates sits in the JetStream log (written before the
 * edge refused such text, published here around the codec, which now refuses it). The live sessions and
 * audit projections on real Postgres store it with U+FFFD and go on past it, the session can still be
 * touched and ended, /readyz and /metrics say the projections are fine, and rebuilding both read models
 * from the log gives exactly the same tables.
 */

const NUL = "\u0000";
const HIGH = "\ud83d";
const LOW = "\ude00";
const R = "\ufffd";

let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let tessera: Tessera;
let handle: DatabaseHandle;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("unstorable");
  database = await createTestDatabase();
  tessera = await startDistributed({ prefix, databaseUrl: database.url });
  handle = await openDatabase({ url: database.url, poolSize: 2 });
});

afterAll(async () => {
  await handle?.close();
  await tessera?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

async function createVia(userId: string): Promise<string> {
  const response = await tessera.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: userId, roles: ["user"] },
  });
  expect(response.statusCode, response.body).toBe(201);
  return (response.json() as { session: { id: string } }).session.id;
}

async function caughtUp() {
  const end = await tessera.log.lastPosition();
  expect(await waitForCheckpoint(tessera.readModel, end, 10_000)).toBe(true);
  expect(await waitForCheckpoint(createAuditReadModel(handle.db), end, 10_000)).toBe(true);
}

describe("an event holding text Postgres cannot store, already in the log", () => {
  it("is projected with U+FFFD in place, live and rebuilt alike, and nothing stalls", async () => {
    await createVia("before");

    const now = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    const legacy: SessionCreated = sessionCreated(newSessionId(), `u${NUL}1`);
    Object.assign(legacy.data, {
      createdAt: iso(now),
      expiresAt: iso(now + 3_600_000),
      maxExpiresAt: iso(now + 86_400_000),
      username: `name${HIGH}`,
      roles: [`role${NUL}`],
      groups: [LOW],
      metadata: { [`key${NUL}`]: `value${HIGH}` },
      client: `client${NUL}`,
      userAgent: `agent${LOW}`,
    });
    const id = legacy.data.sessionId;
    const meta = metadata({ actor: { kind: "user", id: `actor${NUL}` }, userAgent: `meta${HIGH}` });
    // The codec refuses to append it now...
    await expect(
      tessera.log.append(sessionStream(id), legacy, meta, { expectedVersion: 0, messageId: meta.commandId }),
    ).rejects.toBeInstanceOf(EventEncodeError);
    // ...so it goes in as an older writer put it there.
    const subject = createEventSubjects(prefix).subjectFor(sessionStream(id));
    const ack = await jetstream(nc).publish(subject, JSON.stringify({ ...legacy, metadata: meta }));

    // Later events of that session carry the same text and are appended as usual.
    const touched = sessionTouched(id, 60);
    Object.assign(touched.data, { at: iso(now + 1_000), userAgent: `touch${NUL}` });
    const touchMeta = metadata({ actor: { kind: "user", id: `u${NUL}1` } });
    await tessera.log.append(sessionStream(id), touched, touchMeta, {
      expectedVersion: ack.seq,
      messageId: touchMeta.commandId,
    });
    // An admin can still end it: the ending copies the stored user id.
    const ended = await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${id}`,
      headers: adminHeaders,
    });
    expect(ended.statusCode, ended.body).toBe(200);
    await createVia("after");
    await caughtUp();

    const listed = await tessera.app.inject({
      method: "GET",
      url: `/v1/sessions?status=all&user_id=${encodeURIComponent(`u${R}1`)}`,
      headers: adminHeaders,
    });
    expect(listed.statusCode, listed.body).toBe(200);
    expect((listed.json() as { sessions: unknown[] }).sessions).toEqual([
      expect.objectContaining({
        id,
        user_id: `u${R}1`,
        username: `name${R}`,
        roles: [`role${R}`],
        status: "invalidated",
        metadata: { [`key${R}`]: `value${R}` },
      }),
    ]);
    const audit = await tessera.app.inject({
      method: "GET",
      url: `/v1/audit?session_id=${id}`,
      headers: adminHeaders,
    });
    expect(audit.statusCode, audit.body).toBe(200);
    expect(audit.body).toContain(`actor${R}`);
    expect((audit.json() as { events: unknown[] }).events).toHaveLength(3);

    const ready = await tessera.app.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode, ready.body).toBe(200);
    const projections = (ready.json() as { checks: Record<string, { ok: boolean; detail?: string }> }).checks
      .projections;
    expect(projections?.ok).toBe(true);
    expect(projections?.detail).toContain("sessions: ok");
    expect(projections?.detail).toContain("audit: ok");
    const metrics = (await tessera.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toContain('tessera_projection_failures_total{projection="sessions"} 0');
    expect(metrics).toContain('tessera_projection_failures_total{projection="audit"} 0');

    // Rebuilt from the log (the sessions rebuild target folds in memory): the very same tables.
    const live = await snapshot(handle.db);
    expect(live.sessions.find((row) => row.id === id)).toMatchObject({ user_agent: `agent${R}` });
    for (const projection of [POSTGRES_PROJECTIONS.sessions, POSTGRES_PROJECTIONS.audit]) {
      if (projection === undefined) throw new Error("missing projection");
      const result = await rebuildProjection({ db: handle.db, log: tessera.log, projection });
      expect(result.swapped).toBe(true);
    }
    await caughtUp();
    expect(await snapshot(handle.db)).toEqual(live);
  });

  it("a projection stuck on a batch shows in /readyz details and /metrics, without failing readiness", async () => {
    await caughtUp();
    type Ready = { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
    const readyz = async () => {
      const response = await tessera.app.inject({ method: "GET", url: "/readyz" });
      return { status: response.statusCode, body: response.json() as Ready };
    };
    // Any batch holding a SessionCreated now fails in the audit projection, every time it is retried.
    // (not valid: the rows already there are not checked.)
    await sql`alter table audit_events add constraint no_created_for_now check (type <> 'SessionCreated') not valid`.execute(
      handle.db,
    );
    try {
      await createVia("stuck");
      let ready = await readyz();
      const deadline = Date.now() + 10_000;
      while (!/audit: failing, [2-9]\d* consecutive/.test(ready.body.checks.projections?.detail ?? "")) {
        if (Date.now() > deadline) throw new Error(`never reported failing: ${JSON.stringify(ready.body)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
        ready = await readyz();
      }
      expect(ready.status).toBe(200);
      expect(ready.body.status).toBe("degraded");
      expect(ready.body.checks.projections).toMatchObject({ ok: false, required: false });
      // 23514: check_violation. The code, never Postgres' message.
      expect(ready.body.checks.projections?.detail).toMatch(/audit: failing, .* \(last 23514 at \d{4}-/);
      expect(ready.body.checks.projections?.detail).toContain("sessions: ok");
      expect(ready.body.checks.database?.ok).toBe(true);
      const metrics = (await tessera.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/tessera_projection_failures_total\{projection="audit"\} [2-9]/);
      expect(metrics).toMatch(/tessera_projection_consecutive_failures\{projection="audit"\} [2-9]/);
      expect(metrics).toContain('tessera_projection_consecutive_failures{projection="sessions"} 0');
    } finally {
      await handle.db.schema.alterTable("audit_events").dropConstraint("no_created_for_now").execute();
    }
    await caughtUp();
    const deadline = Date.now() + 10_000;
    while ((await readyz()).body.checks.projections?.detail?.includes("audit: ok") !== true) {
      if (Date.now() > deadline) throw new Error("never recovered");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const metrics = (await tessera.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toContain('tessera_projection_consecutive_failures{projection="audit"} 0');
  });
});
