import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { eventStreamName } from "../../src/adapters/jetstream/subjects.ts";
import { credentialKeysBucketName } from "../../src/adapters/nats-kv/credential-key-store.ts";
import { CREDENTIAL_SHREDDER } from "../../src/app/credential-shredder.ts";
import type { Tessera } from "../../src/main.ts";
import { freePort } from "../support/ports.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, bearer, eventually, startEmbedded } from "../support/tessera.ts";
import { fakeClockAt, startDistributedAt, T0, typesOf } from "../time/helpers.ts";

/**
 * Upstream credentials kept for a session's life (seed 000, docs/credentials.md), on the real NATS and
 * Postgres with two instances sharing a fake clock: sealed at create (checked by a validator service on
 * loopback first), read back with the session's own token on the other instance, and unreadable for good
 * once the session ends by logout, expiry or recycling — the key purged from the KV bucket.
 */

let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let clock: FakeClock;
let a: Tessera;
let b: Tessera;
let validatorServer: Server;
/** What the validator service was sent, in order (the test's own fake upstream). */
const checked: unknown[] = [];

const MASTER_KEY = randomBytes(32).toString("base64");

beforeAll(async () => {
  validatorServer = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      const credentials = JSON.parse(body) as { jira_token?: string };
      checked.push(credentials);
      response.statusCode =
        credentials.jira_token === "wrong" ? 401 : credentials.jira_token === "upstream-down" ? 502 : 204;
      response.end();
    });
  });
  validatorServer.listen(0, "127.0.0.1");
  await once(validatorServer, "listening");
  const address = validatorServer.address();
  if (address === null || typeof address === "string") throw new Error("no port");

  nc = await connectNats();
  prefix = uniquePrefix("vault");
  database = await createTestDatabase();
  clock = fakeClockAt(T0);
  const env = {
    TESSERA_CREDENTIALS_KEY: MASTER_KEY,
    TESSERA_CREDENTIALS_VALIDATE_URL: `http://127.0.0.1:${address.port}/check`,
  };
  a = await startDistributedAt(prefix, database.url, { clock, env });
  b = await startDistributedAt(prefix, database.url, { clock, env });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
  validatorServer?.close();
});

const upstream = (marker: string) => ({
  jira_url: "https://jira.example.com",
  jira_token: marker,
  confluence_url: "https://wiki.example.com",
  confluence_token: `${marker}-confluence`,
});

async function create(on: Tessera, body: Record<string, unknown>) {
  return on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: "alice", roles: ["user"], ...body },
  });
}

async function createWith(on: Tessera, credentials: Record<string, unknown>, extra = {}) {
  const response = await create(on, { credentials, ...extra });
  expect(response.statusCode, response.body).toBe(201);
  const created = response.json() as { session: { id: string }; token: string };
  return { id: created.session.id, token: created.token };
}

const read = (on: Tessera, id: string, headers: Record<string, string>) =>
  on.app.inject({ method: "GET", url: `/v1/sessions/${id}/credentials`, headers });

async function keyEntry(sessionId: string) {
  const kv = await new Kvm(nc).open(credentialKeysBucketName(prefix));
  return kv.get(sessionId);
}

const hasKey = async (sessionId: string) => (await keyEntry(sessionId))?.operation === "PUT";

/** Moves the shared clock and waits until one instance's scheduler has run the new second's pass. */
async function advance(ms: number) {
  clock.advance(ms);
  const second = Math.floor(clock.now() / 1000);
  const lastTick = () =>
    Math.max(a.time.scheduler.stats.lastPass?.tick ?? 0, b.time.scheduler.stats.lastPass?.tick ?? 0);
  await eventually(() => lastTick() >= second, 5_000);
}

describe("upstream credentials, kept for the session's life", () => {
  it("seals them at create and hands them back, on the other instance, to the session's own token only", async () => {
    const { id, token } = await createWith(a, upstream("MARKER-read-back"));
    expect(checked.at(-1)).toEqual(upstream("MARKER-read-back"));
    expect(await hasKey(id)).toBe(true);

    const response = await read(b, id, bearer(token));
    expect(response.statusCode, response.body).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");
    expect(response.json()).toEqual(upstream("MARKER-read-back"));

    // The admin key, another session's token, a token with a wrong secret, nothing at all: refused.
    const other = await createWith(a, upstream("MARKER-other"));
    expect((await read(b, id, adminHeaders)).statusCode).toBe(403);
    expect((await read(b, id, bearer(other.token))).statusCode).toBe(403);
    expect((await read(b, id, bearer(`${token.slice(0, -4)}AAAA`))).statusCode).toBe(401);
    expect((await read(b, id, {})).statusCode).toBe(401);

    // A session without credentials.
    const plain = await create(a, {});
    const plainCreated = plain.json() as { session: { id: string }; token: string };
    const missing = await read(b, plainCreated.session.id, bearer(plainCreated.token));
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: "credentials_not_found" });
  });

  it("keeps no plaintext in the log, the audit trail or the KV view", async () => {
    const { id } = await createWith(a, upstream("MARKER-plaintext"));
    const [created] = (await a.log.readStream({ category: "session", id })).events;
    expect(created?.type).toBe("SessionCreated");
    const jsm = await jetstreamManager(nc);
    const message = await jsm.streams.getMessage(eventStreamName(prefix), { seq: created?.position ?? 0 });
    const raw = Buffer.from(message?.data ?? []).toString("latin1");
    expect(raw).toContain('"credentials":{"alg":"A256GCM"');
    expect(raw).not.toContain("MARKER-plaintext");
    // The wrapped key holds no plaintext either.
    const entry = await keyEntry(id);
    expect(Buffer.from(entry?.value ?? []).toString("latin1")).not.toContain("MARKER-plaintext");

    await eventually(async () => {
      const audit = await a.app.inject({
        method: "GET",
        url: `/v1/audit?session_id=${id}`,
        headers: adminHeaders,
      });
      return audit.statusCode === 200 && (audit.json() as { events: unknown[] }).events.length === 1;
    });
    const audit = await a.app.inject({
      method: "GET",
      url: `/v1/audit?session_id=${id}`,
      headers: adminHeaders,
    });
    expect(audit.body).not.toContain("credentials");
    expect(audit.body).not.toContain("ciphertext");
    const view = await a.store.getSession(id);
    expect(JSON.stringify(view)).not.toContain("ciphertext");
  });

  it("destroys the key when the session is invalidated: 410 from then on, on every instance", async () => {
    const { id, token } = await createWith(a, upstream("MARKER-logout"));
    expect((await read(b, id, bearer(token))).statusCode).toBe(200);
    const ended = await a.app.inject({ method: "DELETE", url: `/v1/sessions/${id}`, headers: bearer(token) });
    expect(ended.statusCode).toBe(200);
    // Refused at once (the read checks the log), and the key is purged by the shredder shortly after.
    const gone = await read(b, id, bearer(token));
    expect(gone.statusCode).toBe(410);
    expect(gone.json()).toMatchObject({ code: "credentials_destroyed" });
    await eventually(async () => !(await hasKey(id)), 10_000);
    expect((await keyEntry(id))?.operation).toBe("PURGE");
    // Even the vault itself, asked directly, has nothing left to open.
    expect((await read(a, id, bearer(token))).statusCode).toBe(410);
  });

  it("refuses credentials the validator refuses (401) and answers 503 when it cannot tell; nothing is written", async () => {
    const before = await a.log.lastPosition();
    const refused = await create(a, { credentials: { jira_token: "wrong" } });
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toMatchObject({ code: "credentials_invalid" });
    expect(refused.body).not.toContain("wrong");
    const down = await create(a, { credentials: { jira_token: "upstream-down" } });
    expect(down.statusCode).toBe(503);
    expect(down.json()).toMatchObject({ code: "service_unavailable" });
    expect(await a.log.lastPosition()).toBe(before);
    const kv = await new Kvm(nc).open(credentialKeysBucketName(prefix));
    const keysBefore = (await kv.status()).values;

    // Bodies the edge refuses before asking anyone.
    const tooBig = await create(a, { credentials: { blob: "x".repeat(5_000) } });
    expect(tooBig.statusCode).toBe(400);
    const nul = await create(a, { credentials: { token: "a\u0000b" } });
    expect(nul.statusCode).toBe(400);
    expect(await a.log.lastPosition()).toBe(before);
    expect((await kv.status()).values).toBe(keysBefore);
  });

  it("destroys the key when the session expires, and when it is recycled", async () => {
    const expiring = await createWith(a, upstream("MARKER-expiry"), { ttl_seconds: 60 });
    const recycled = await createWith(b, upstream("MARKER-recycle"), { user_id: "bob" });
    expect(await hasKey(expiring.id)).toBe(true);

    await advance(61_000);
    await eventually(async () => (await typesOf(a, expiring.id)).includes("SessionExpired"), 5_000);
    await eventually(async () => !(await hasKey(expiring.id)), 10_000);
    expect((await read(b, expiring.id, bearer(expiring.token))).statusCode).toBe(410);

    const recycle = await b.app.inject({
      method: "POST",
      url: "/v1/sessions/recycle",
      headers: bearer(recycled.token),
    });
    expect(recycle.statusCode, recycle.body).toBe(200);
    await eventually(async () => (await typesOf(a, recycled.id)).includes("SessionRecycled"), 10_000);
    await eventually(async () => !(await hasKey(recycled.id)), 10_000);
    expect((await read(a, recycled.id, bearer(recycled.token))).statusCode).toBe(410);
    // The shredder's checkpoint has moved past both endings.
    const position = await a.log.lastPosition();
    await eventually(async () => (await a.store.getCheckpoint(CREDENTIAL_SHREDDER)) >= position, 5_000);
  });

  it("an Idempotency-Key retry returns the original session (its credentials) and refuses a retry that drops them", async () => {
    const headers = { ...adminHeaders, "idempotency-key": `cred-${randomBytes(6).toString("hex")}` };
    const send = (payload: Record<string, unknown>) =>
      a.app.inject({
        method: "POST",
        url: "/v1/sessions",
        headers,
        payload: { user_id: "dave", ...payload },
      });
    const first = await send({ credentials: upstream("MARKER-idem") });
    expect(first.statusCode).toBe(201);
    const retry = await send({ credentials: upstream("MARKER-idem") });
    expect(retry.statusCode).toBe(201);
    expect(retry.headers["idempotent-replayed"]).toBe("true");
    const { session, token } = first.json() as { session: { id: string }; token: string };
    expect((retry.json() as { session: { id: string } }).session.id).toBe(session.id);
    expect((await read(b, session.id, bearer(token))).json()).toEqual(upstream("MARKER-idem"));
    const dropped = await send({});
    expect(dropped.statusCode).toBe(422);
  });

  it("distributed without TESSERA_CREDENTIALS_KEY: a create with credentials is 501, everything else works", async () => {
    const c = await startDistributedAt(prefix, database.url, { clock });
    try {
      const refused = await create(c, { credentials: upstream("MARKER-nokey") });
      expect(refused.statusCode).toBe(501);
      expect(refused.json()).toMatchObject({ code: "credentials_unsupported" });
      expect((await create(c, {})).statusCode).toBe(201);
    } finally {
      await c.close();
    }
  });
});

describe("embedded mode", () => {
  it("keeps credentials under a per-process key, refuses the owner's access JWT, and answers 503 when the validator is unreachable", async () => {
    const port = await freePort();
    const embedded = await startEmbedded();
    const unreachable = await startEmbedded({
      TESSERA_CREDENTIALS_VALIDATE_URL: `http://127.0.0.1:${port}/check`,
    });
    try {
      // demo signs in (embedded mode seeds it) and opens a session with credentials using its access JWT.
      const login = await embedded.app.inject({
        method: "POST",
        url: "/v1/auth/token",
        payload: { grant_type: "password", username: "demo", password: "demo123!" },
      });
      expect(login.statusCode, login.body).toBe(200);
      const jwt = (login.json() as { access_token: string }).access_token;
      const response = await embedded.app.inject({
        method: "POST",
        url: "/v1/sessions",
        headers: bearer(jwt),
        payload: { credentials: { token: "MARKER-embedded" } },
      });
      expect(response.statusCode, response.body).toBe(201);
      const { session, token } = response.json() as { session: { id: string }; token: string };
      const back = await embedded.app.inject({
        method: "GET",
        url: `/v1/sessions/${session.id}/credentials`,
        headers: bearer(token),
      });
      expect(back.json()).toEqual({ token: "MARKER-embedded" });
      // The same user's access JWT is not the session's own token: refused.
      const viaJwt = await embedded.app.inject({
        method: "GET",
        url: `/v1/sessions/${session.id}/credentials`,
        headers: bearer(jwt),
      });
      expect(viaJwt.statusCode).toBe(403);

      const before = await unreachable.log.lastPosition();
      const down = await unreachable.app.inject({
        method: "POST",
        url: "/v1/sessions",
        headers: adminHeaders,
        payload: { user_id: "carol", credentials: { token: "x" } },
      });
      expect(down.statusCode).toBe(503);
      expect(await unreachable.log.lastPosition()).toBe(before);
    } finally {
      await embedded.close();
      await unreachable.close();
    }
  });
});
