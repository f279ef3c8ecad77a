import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CallOptions,
  type ChannelCredentials,
  credentials,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sessionsServiceDefinition } from "../../src/adapters/grpc/server.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import type { Tessera } from "../../src/main.ts";
import { freePort } from "../support/ports.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { ADMIN_KEY, adminHeaders, bearer, startDistributed, startEmbedded } from "../support/tessera.ts";
import { createdSince, sessionOf } from "./transport-checks.ts";

/** `tessera.v1.Sessions` over gRPC against a real instance: REST's operations, rules and problems. */

type Message = Record<string, unknown> & { session?: Record<string, unknown> };
type Unary = (
  request: Message,
  metadata: Metadata,
  options: CallOptions,
  callback: (error: ServiceError | null, response: Message) => void,
) => void;
const SessionsClient = makeGenericClientConstructor(sessionsServiceDefinition(), "Sessions");

function client(port: number, channel: ChannelCredentials = credentials.createInsecure()) {
  // With TLS the name checked is the certificate's DNS name (an IP as TLS server name is deprecated).
  const stub = new SessionsClient(`127.0.0.1:${port}`, channel, {
    "grpc.ssl_target_name_override": "localhost",
  }) as unknown as Record<string, Unary> & {
    close(): void;
  };
  const call = (
    method: string,
    request: Message,
    auth?: { token?: string; adminKey?: string; idempotencyKey?: string },
    deadlineMs = 5_000,
  ) =>
    new Promise<Message>((resolve, reject) => {
      const metadata = new Metadata();
      if (auth?.token) metadata.set("authorization", `Bearer ${auth.token}`);
      if (auth?.adminKey) metadata.set("x-admin-key", auth.adminKey);
      if (auth?.idempotencyKey !== undefined) metadata.set("idempotency-key", auth.idempotencyKey);
      (stub[method] as Unary).call(
        stub,
        request,
        metadata,
        { deadline: Date.now() + deadlineMs },
        (error, response) => (error ? reject(error) : resolve(response)),
      );
    });
  return { call, close: () => stub.close() };
}

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("the call succeeded");
}

const problemOf = (error: ServiceError) =>
  JSON.parse(String(error.metadata.get("tessera-problem-bin")[0])) as Record<string, unknown>;

async function create(on: Tessera, userId: string, roles = ["user"]) {
  const response = await on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: userId, roles },
  });
  expect(response.statusCode, response.body).toBe(201);
  return response.json() as { session: { id: string; expires_at: string }; token: string };
}

describe("gRPC Sessions service", () => {
  let tessera: Tessera;
  let rpc: ReturnType<typeof client>;

  beforeAll(async () => {
    const port = await freePort();
    tessera = await startEmbedded({ TESSERA_GRPC_PORT: String(port) });
    rpc = client(port);
  });
  afterAll(async () => {
    rpc?.close();
    await tessera?.close();
  });

  it("answers each RPC with REST's data", async () => {
    const alice = await create(tessera, "g-alice");
    const auth = { token: alice.token };

    const validated = await rpc.call("Validate", {}, auth);
    expect(validated).toMatchObject({
      valid: true,
      session: { id: alice.session.id, status: "active", metadata_json: "{}" },
      user: { id: "g-alice", roles: ["user"] },
    });
    expect(await rpc.call("Validate", { token: "tss_nope" })).toMatchObject({
      valid: false,
      reason: "malformed",
    });

    expect(await rpc.call("Get", { id: alice.session.id }, auth)).toMatchObject({
      id: alice.session.id,
      user_id: "g-alice",
    });

    const listed = await rpc.call("List", { status: "all" }, auth);
    expect(listed).toMatchObject({ total: 1, read_model_behind: 0 });
    expect((listed.sessions as Message[]).map((s) => s.id)).toEqual([alice.session.id]);

    const renewed = await rpc.call("Renew", { id: alice.session.id, ttl_seconds: 7200 }, auth);
    expect(Date.parse(String(renewed.session?.expires_at))).toBeGreaterThan(
      Date.parse(alice.session.expires_at),
    );

    const created = await rpc.call("Create", { client: "grpc-test", metadata_json: '{"a":1}' }, auth);
    expect(created).toMatchObject({
      session: { user_id: "g-alice", client: "grpc-test", metadata_json: '{"a":1}' },
    });
    expect(String(created.token)).toMatch(/^tss_/);

    const ended = await rpc.call("Invalidate", { id: created.session?.id }, auth);
    expect(ended).toMatchObject({ end_reason: "revoked", session: { status: "invalidated" } });
    const { events } = await tessera.log.readStream({ category: "session", id: String(created.session?.id) });
    expect(events.map((e) => e.metadata.source)).toEqual(["grpc", "grpc"]);

    // The admin key works as on REST: a session for another user.
    const forBob = await rpc.call("Create", { user_id: "g-bob", roles: ["viewer"] }, { adminKey: ADMIN_KEY });
    expect(forBob).toMatchObject({ session: { user_id: "g-bob", roles: ["viewer"] } });
  });

  it("maps failures to gRPC codes with the REST problem in the trailers", async () => {
    const carl = await create(tessera, "g-carl");
    const dana = await create(tessera, "g-dana");

    const anonymous = await failure(rpc.call("Get", { id: carl.session.id }));
    expect(anonymous.code).toBe(status.UNAUTHENTICATED);
    const badToken = await failure(rpc.call("Get", { id: carl.session.id }, { token: "tss_bad" }));
    expect(badToken.code).toBe(status.UNAUTHENTICATED);

    const foreign = await failure(rpc.call("Get", { id: dana.session.id }, { token: carl.token }));
    expect(foreign.code).toBe(status.PERMISSION_DENIED);
    expect(foreign.metadata.get("tessera-code")).toEqual(["access_denied"]);
    expect(problemOf(foreign)).toMatchObject({ status: 403, code: "access_denied" });

    const missing = await failure(
      rpc.call("Get", { id: "0199a1b2-0000-7000-8000-000000000001" }, { token: carl.token }),
    );
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(problemOf(missing)).toMatchObject({ code: "session_not_found" });

    const badId = await failure(rpc.call("Renew", { id: "nope" }, { token: carl.token }));
    expect(badId.code).toBe(status.INVALID_ARGUMENT);
    const badMetadata = await failure(rpc.call("Create", { metadata_json: "[" }, { token: carl.token }));
    expect(badMetadata.code).toBe(status.INVALID_ARGUMENT);
    const badStatus = await failure(rpc.call("List", { status: "gone" }, { token: carl.token }));
    expect(badStatus.code).toBe(status.INVALID_ARGUMENT);

    await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${dana.session.id}`,
      headers: adminHeaders,
    });
    const late = await failure(rpc.call("Renew", { id: dana.session.id }, { adminKey: ADMIN_KEY }));
    expect(late.code).toBe(status.FAILED_PRECONDITION);
    expect(problemOf(late)).toMatchObject({ code: "session_ended", end_reason: "revoked_by_admin" });

    // A viewer may read but not write, as on REST.
    const viewer = await create(tessera, "g-vera", ["viewer"]);
    const write = await failure(rpc.call("Invalidate", { id: viewer.session.id }, { token: viewer.token }));
    expect(write.code).toBe(status.PERMISSION_DENIED);
  });
});

describe("gRPC configuration", () => {
  it("is off unless TESSERA_GRPC_PORT is set, and refuses a bad or clashing port", () => {
    expect(loadConfig({}).grpcPort).toBeUndefined();
    expect(loadConfig({ TESSERA_GRPC_PORT: " " }).grpcPort).toBeUndefined();
    expect(loadConfig({ TESSERA_GRPC_PORT: "50051" }).grpcPort).toBe(50051);
    expect(() => loadConfig({ TESSERA_GRPC_PORT: "grpc" })).toThrow(ConfigError);
    expect(() => loadConfig({ TESSERA_GRPC_PORT: "70000" })).toThrow(/TESSERA_GRPC_PORT/);
    expect(() => loadConfig({ PORT: "9000", TESSERA_GRPC_PORT: "9000" })).toThrow(/must differ from PORT/);
  });

  it("opens no port when TESSERA_GRPC_PORT is unset", async () => {
    const port = await freePort();
    const tessera = await startEmbedded({ PORT: String(port) });
    const rpc = client(port);
    try {
      // Nothing answers gRPC there (the HTTP server is not listening either: only gRPC would have).
      const refused = await failure(rpc.call("Validate", { token: "tss_x" }, undefined, 1_000));
      expect(refused.code).toBe(status.UNAVAILABLE);
    } finally {
      rpc.close();
      await tessera.close();
    }
  });

  it("serves the HTTP server's certificate when TLS is configured", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tessera-grpc-tls-"));
    const certFile = join(dir, "cert.pem");
    const keyFile = join(dir, "key.pem");
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
        ...["-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=127.0.0.1"],
        ...["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      ],
      { stdio: "ignore" },
    );
    const port = await freePort();
    const tessera = await startEmbedded({
      TESSERA_GRPC_PORT: String(port),
      TESSERA_TLS_CERT_FILE: certFile,
      TESSERA_TLS_KEY_FILE: keyFile,
    });
    const secure = client(port, credentials.createSsl(readFileSync(certFile)));
    const plain = client(port);
    try {
      const alice = await create(tessera, "g-tls");
      expect(await secure.call("Get", { id: alice.session.id }, { token: alice.token })).toMatchObject({
        id: alice.session.id,
      });
      const refused = await failure(
        plain.call("Get", { id: alice.session.id }, { token: alice.token }, 1_000),
      );
      expect(refused.code).toBe(status.UNAVAILABLE);
    } finally {
      secure.close();
      plain.close();
      await tessera.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("gRPC retry-safe Create and RevokeAll, two instances on NATS and Postgres", () => {
  const instances: Tessera[] = [];
  const clients: Array<ReturnType<typeof client>> = [];
  let database: TestDatabase | undefined;
  let nc: Awaited<ReturnType<typeof connectNats>> | undefined;
  const prefix = uniquePrefix("grpc-parity");
  let a: Tessera;
  let onA: ReturnType<typeof client>;
  let onB: ReturnType<typeof client>;

  beforeAll(async () => {
    nc = await connectNats();
    database = await createTestDatabase();
    // startPair gives both instances one env; each needs a gRPC port of its own.
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      instances.push(
        await startDistributed({
          prefix,
          databaseUrl: database.url,
          env: { TESSERA_GRPC_PORT: String(port) },
        }),
      );
      clients.push(client(port));
    }
    [a] = instances as [Tessera];
    [onA, onB] = clients as [ReturnType<typeof client>, ReturnType<typeof client>];
  });
  afterAll(async () => {
    for (const rpc of clients) rpc.close();
    for (const instance of instances) await instance.close();
    if (nc) {
      await removeNatsPrefix(nc, prefix);
      await nc.close();
    }
    await database?.drop();
  });

  it("a Create retried with the same idempotency-key returns the same session and token, once in the log", async () => {
    const ann = await create(a, "gi-ann");
    const before = await a.log.lastPosition();
    const request = { client: "retry", metadata_json: '{"a":1,"b":[1,2]}' };
    const auth = { token: ann.token, idempotencyKey: "grpc-create-1" };

    const first = await onA.call("Create", request, auth);
    expect(first).toMatchObject({ idempotent_replayed: false, session: { user_id: "gi-ann" } });
    const retry = await onB.call("Create", { ...request, metadata_json: '{"b":[1,2],"a":1}' }, auth);
    expect(retry.session?.id).toBe(first.session?.id);
    expect(retry.token).toBe(first.token);
    expect(retry.idempotent_replayed).toBe(true);
    // Scoped as REST scopes Idempotency-Key (caller and operation): the same key over REST finds it too.
    const overRest = await a.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: { ...bearer(ann.token), "idempotency-key": "grpc-create-1" },
      payload: { client: "retry", metadata: { a: 1, b: [1, 2] } },
    });
    expect(overRest.statusCode, overRest.body).toBe(201);
    expect(overRest.json()).toMatchObject({ session: { id: first.session?.id } });
    expect(await createdSince(a, before, "gi-ann")).toBe(1);

    // Another user's identical key and request is another caller's: a session of its own.
    const ben = await create(a, "gi-ben");
    const bens = await onA.call("Create", request, { token: ben.token, idempotencyKey: "grpc-create-1" });
    expect(bens).toMatchObject({ idempotent_replayed: false, session: { user_id: "gi-ben" } });
    expect(bens.session?.id).not.toBe(first.session?.id);
    // Without the metadata every Create is a new session, as without the header on REST.
    const plain = await onA.call("Create", request, { token: ann.token });
    expect(plain.session?.id).not.toBe(first.session?.id);
  });

  it("a Renew retried with the same idempotency-key appends once; REST finds it with the same key", async () => {
    const renewer = await create(a, "gi-renewer");
    const auth = { token: renewer.token, idempotencyKey: "grpc-renew-1" };
    const request = { id: renewer.session.id, ttl_seconds: 7200 };
    const first = await onA.call("Renew", request, auth);
    const retry = await onB.call("Renew", request, auth);
    expect(retry.session?.expires_at).toBe(first.session?.expires_at);
    const overRest = await a.app.inject({
      method: "POST",
      url: `/v1/sessions/${renewer.session.id}/renew`,
      headers: { ...bearer(renewer.token), "idempotency-key": "grpc-renew-1" },
      payload: { ttl_seconds: 7200 },
    });
    expect(overRest.statusCode, overRest.body).toBe(200);
    const { events } = await a.log.readStream({ category: "session", id: renewer.session.id });
    expect(events.map((event) => event.type)).toEqual(["SessionCreated", "SessionRenewed"]);
  });

  it("the same idempotency-key with another request is FAILED_PRECONDITION idempotency_key_reused", async () => {
    const cat = await create(a, "gi-cat");
    const auth = { token: cat.token, idempotencyKey: "grpc-reuse" };
    await onA.call("Create", { client: "one" }, auth);
    const after = await a.log.lastPosition();
    for (const rpc of [onA, onB]) {
      const refused = await failure(rpc.call("Create", { client: "two" }, auth));
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.metadata.get("tessera-code")).toEqual(["idempotency_key_reused"]);
      expect(problemOf(refused)).toMatchObject({ status: 422, code: "idempotency_key_reused" });
    }
    expect(await createdSince(a, after, "gi-cat")).toBe(0);

    // REST's rule for the key, checked once access is decided (a bad key never outranks 403).
    const malformed = await failure(
      onA.call("Create", {}, { token: cat.token, idempotencyKey: "two words" }),
    );
    expect(malformed.code).toBe(status.INVALID_ARGUMENT);
    expect(problemOf(malformed)).toMatchObject({ code: "invalid_request" });
    const forbidden = await failure(
      onA.call("Create", { roles: ["admin"] }, { token: cat.token, idempotencyKey: "two words" }),
    );
    expect(forbidden.code).toBe(status.PERMISSION_DENIED);
  });

  it("RevokeAll ends the caller's own sessions, and another user's only for admins", async () => {
    const dan = await create(a, "gi-dan");
    const dan2 = await create(a, "gi-dan");
    const eve = await create(a, "gi-eve");
    const eve2 = await create(a, "gi-eve");

    // A user token cannot end someone else's sessions.
    const foreign = await failure(onA.call("RevokeAll", { user_id: "gi-eve" }, { token: dan.token }));
    expect(foreign.code).toBe(status.PERMISSION_DENIED);
    expect(problemOf(foreign)).toMatchObject({ status: 403, code: "access_denied" });
    expect((await sessionOf(a, eve.session.id)).status).toBe("active");

    // Its own, keeping the calling one; then the last one too (naming itself is the same).
    expect(await onB.call("RevokeAll", { except: "current" }, { token: dan.token })).toEqual({
      count: 1,
      user_id: "gi-dan",
    });
    expect(await sessionOf(a, dan2.session.id)).toMatchObject({
      status: "invalidated",
      end_reason: "revoke_all",
    });
    expect(await onB.call("RevokeAll", { user_id: "gi-dan" }, { token: dan.token })).toEqual({
      count: 1,
      user_id: "gi-dan",
    });
    expect((await sessionOf(a, dan.session.id)).end_reason).toBe("revoke_all");

    // An admin ends another user's sessions, with REST's admin reason.
    const admin = await create(a, "gi-admin", ["admin"]);
    expect(await onA.call("RevokeAll", { user_id: "gi-eve" }, { token: admin.token })).toEqual({
      count: 2,
      user_id: "gi-eve",
    });
    for (const ended of [eve, eve2]) {
      expect(await sessionOf(a, ended.session.id)).toMatchObject({ end_reason: "revoked_by_admin" });
      const { events } = await a.log.readStream({ category: "session", id: ended.session.id });
      expect(events.at(-1)).toMatchObject({ type: "SessionInvalidated", metadata: { source: "grpc" } });
    }
    expect((await sessionOf(a, admin.session.id)).status).toBe("active");

    // The admin key names the user.
    const unnamed = await failure(onA.call("RevokeAll", {}, { adminKey: ADMIN_KEY }));
    expect(unnamed.code).toBe(status.INVALID_ARGUMENT);
    const bad = await failure(onA.call("RevokeAll", { except: "all" }, { token: admin.token }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
  });
});
