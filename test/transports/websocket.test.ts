import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, type Pair, startEmbedded, startPair } from "../support/tessera.ts";
import { createdSince, sessionOf } from "./transport-checks.ts";
import { connect, type RpcSocket, upgradeStatus } from "./ws-client.ts";

/**
 * `/v1/ws`: JSON-RPC over WebSocket against a real instance (docs/transports.md). The same operations,
 * rules and problems as REST; the socket closes with 4401 when its session ends, wherever it ended.
 */

async function listen(tessera: Tessera): Promise<string> {
  const address = await tessera.app.listen({ host: "127.0.0.1", port: 0 });
  return `${address.replace(/^http/, "ws")}/v1/ws`;
}

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

describe("WebSocket JSON-RPC on an embedded instance", () => {
  let tessera: Tessera;
  let url: string;
  const open: RpcSocket[] = [];
  const connectAs = async (token: string) => {
    const rpc = await connect(url, { headers: bearer(token) });
    open.push(rpc);
    return rpc;
  };

  beforeAll(async () => {
    tessera = await startEmbedded();
    url = await listen(tessera);
  });
  afterAll(async () => {
    for (const rpc of open) rpc.socket.terminate();
    await tessera?.close();
  });

  it("validates, gets, lists, renews, creates and invalidates with the REST shapes", async () => {
    const alice = await create(tessera, "ws-alice");
    const rpc = await connectAs(alice.token);

    const validated = await rpc.call("sessions.validate");
    expect(validated.result).toMatchObject({
      valid: true,
      session: { id: alice.session.id, status: "active" },
      user: { id: "ws-alice", roles: ["user"] },
    });
    const refused = await rpc.call("sessions.validate", { token: "tss_nope" });
    expect(refused.result).toEqual({ valid: false, reason: "malformed" });

    const got = await rpc.call("sessions.get", { id: alice.session.id });
    expect(got.result).toMatchObject({ id: alice.session.id, user_id: "ws-alice", status: "active" });

    const listed = await rpc.call("sessions.list", { status: "active" });
    expect(listed.result?.total).toBe(1);
    expect(listed.result).toMatchObject({
      sessions: [{ id: alice.session.id }],
      next_cursor: null,
      read_model: { behind: 0 },
    });

    const renewed = await rpc.call("sessions.renew", { id: alice.session.id, ttl_seconds: 7200 });
    const expiresAt = Date.parse(String(renewed.result?.session?.expires_at));
    expect(expiresAt).toBeGreaterThan(Date.parse(alice.session.expires_at));

    const created = await rpc.call("sessions.create", { client: "ws-test", metadata: { tab: 1 } });
    expect(created.result).toMatchObject({
      session: { user_id: "ws-alice", client: "ws-test", metadata: { tab: 1 } },
    });
    expect(String(created.result?.token)).toMatch(/^tss_/);
    const otherId = String(created.result?.session?.id);

    const ended = await rpc.call("sessions.invalidate", { id: otherId });
    expect(ended.result).toMatchObject({ end_reason: "revoked", session: { status: "invalidated" } });

    // The same audit trail as REST, naming the transport.
    const { events } = await tessera.log.readStream({ category: "session", id: otherId });
    expect(events.map((e) => [e.type, e.metadata.source, e.metadata.actor.id])).toEqual([
      ["SessionCreated", "ws", "ws-alice"],
      ["SessionInvalidated", "ws", "ws-alice"],
    ]);
  });

  it("answers failures as JSON-RPC errors carrying the REST problem", async () => {
    const bob = await create(tessera, "ws-bob");
    const carol = await create(tessera, "ws-carol");
    const rpc = await connectAs(bob.token);

    const foreign = await rpc.call("sessions.get", { id: carol.session.id });
    expect(foreign.error).toMatchObject({ code: 403, data: { code: "access_denied", status: 403 } });
    const unknown = await rpc.call("sessions.get", { id: "0199a1b2-0000-7000-8000-000000000001" });
    expect(unknown.error).toMatchObject({ code: 404, data: { code: "session_not_found" } });
    const badId = await rpc.call("sessions.renew", { id: "nope" });
    expect(badId.error).toMatchObject({ code: -32602, data: { code: "invalid_request" } });
    const unknownField = await rpc.call("sessions.create", { roles: ["admin"], extra: true });
    expect(unknownField.error?.code).toBe(-32602);
    const escalation = await rpc.call("sessions.create", { roles: ["admin"] });
    expect(escalation.error).toMatchObject({ code: 403, data: { code: "access_denied" } });
    // Upstream credentials are sealed by REST only: refused here rather than silently dropped.
    const sealed = await rpc.call("sessions.create", { credentials: { jira_token: "secret" } });
    expect(sealed.error).toMatchObject({ code: -32602, data: { code: "invalid_request" } });
    const method = await rpc.call("sessions.drop");
    expect(method.error?.code).toBe(-32601);

    // A renewal of an ended session: 409 session_ended, as on REST.
    await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${carol.session.id}`,
      headers: adminHeaders,
    });
    const admin = await create(tessera, "ws-admin", ["admin"]);
    const asAdmin = await connectAs(admin.token);
    const late = await asAdmin.call("sessions.renew", { id: carol.session.id });
    expect(late.error).toMatchObject({
      code: 409,
      data: { code: "session_ended", session_status: "invalidated", end_reason: "revoked_by_admin" },
    });
  });

  it("answers malformed messages with JSON-RPC errors and stays usable", async () => {
    const dave = await create(tessera, "ws-dave");
    const rpc = await connectAs(dave.token);
    expect((await rpc.sendRaw("{not json")).error?.code).toBe(-32700);
    expect((await rpc.sendRaw("[1,2]")).error?.code).toBe(-32600);
    expect(
      (await rpc.sendRaw('{"jsonrpc":"2.0","id":7,"method":"sessions.get","params":[1]}')).error,
    ).toMatchObject({ code: -32602 });
    expect((await rpc.sendRaw('{"jsonrpc":"1.0","id":8,"method":"sessions.get"}')).error?.code).toBe(-32600);
    const after = await rpc.call("sessions.get", { id: dave.session.id });
    expect(after.result).toMatchObject({ id: dave.session.id });
  });

  it("refuses the upgrade without a valid credential (401) and plain GETs (426)", async () => {
    expect(await upgradeStatus(url)).toBe(401);
    expect(await upgradeStatus(url, bearer("tss_not-a-token"))).toBe(401);
    const ended = await create(tessera, "ws-erin");
    await tessera.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${ended.session.id}`,
      headers: adminHeaders,
    });
    expect(await upgradeStatus(url, bearer(ended.token))).toBe(401);
    const plain = await tessera.app.inject({ method: "GET", url: "/v1/ws", headers: bearer(ended.token) });
    expect(plain.statusCode).toBe(401);
    const live = await create(tessera, "ws-frank");
    const get = await tessera.app.inject({ method: "GET", url: "/v1/ws", headers: bearer(live.token) });
    expect(get.statusCode).toBe(426);
    expect(get.json()).toMatchObject({ code: "invalid_request" });
  });

  it("closes with 4401 when its own session is invalidated through the socket", async () => {
    const gina = await create(tessera, "ws-gina");
    const rpc = await connectAs(gina.token);
    const answer = rpc.call("sessions.invalidate", { id: gina.session.id }).catch(() => undefined);
    const closed = await rpc.closed;
    expect(closed).toEqual({ code: 4401, reason: "session ended: invalidated" });
    await answer;
  });

  it("closes with 4401 when its session's deadline passes, with no request in between", async () => {
    const response = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: "ws-short", roles: ["user"], ttl_seconds: 1 },
    });
    const { token } = response.json() as { token: string };
    const rpc = await connectAs(token);
    const started = performance.now();
    expect(await rpc.closed).toEqual({ code: 4401, reason: "session ended: expired" });
    expect(performance.now() - started).toBeLessThan(1_500);
  });

  it("accepts an access JWT, in the header or as the bearer subprotocol", async () => {
    const login = await tessera.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "password", username: "demo", password: "demo123!" },
    });
    expect(login.statusCode, login.body).toBe(200);
    const { access_token: jwt, session_id: sessionId } = login.json() as {
      access_token: string;
      session_id: string;
    };
    const viaHeader = await connectAs(jwt);
    expect((await viaHeader.call("sessions.get", { id: sessionId })).result).toMatchObject({ id: sessionId });

    const viaProtocol = await connect(url, { protocols: ["tessera.v1", `tessera.bearer.${jwt}`] });
    open.push(viaProtocol);
    expect(viaProtocol.socket.protocol).toBe("tessera.v1");
    expect((await viaProtocol.call("sessions.get", { id: sessionId })).result).toMatchObject({
      id: sessionId,
    });

    // Logging out ends the session: both sockets close.
    await tessera.app.inject({ method: "POST", url: "/v1/auth/logout", headers: bearer(jwt) });
    expect((await viaHeader.closed).code).toBe(4401);
    expect((await viaProtocol.closed).code).toBe(4401);
  });

  it("limits each connection's message rate", async () => {
    const hank = await create(tessera, "ws-hank");
    const rpc = await connectAs(hank.token);
    const answers = await Promise.all(
      Array.from({ length: 60 }, () => rpc.call("sessions.get", { id: hank.session.id })),
    );
    const limited = answers.filter((a) => a.error?.code === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]?.error?.data).toMatchObject({ code: "rate_limited" });
    expect(answers.some((a) => a.result !== undefined)).toBe(true);
  });

  it("closes a message larger than the body limit with 1009", async () => {
    const ivy = await create(tessera, "ws-ivy");
    const rpc = await connectAs(ivy.token);
    rpc.socket.send("x".repeat(70_000));
    expect((await rpc.closed).code).toBe(1009);
  });
});

describe("WebSocket across instances", () => {
  let pair: Pair;
  let rpc: RpcSocket | undefined;

  beforeAll(async () => {
    pair = await startPair("ws");
  });
  afterAll(async () => {
    rpc?.socket.terminate();
    await pair?.close();
  });

  it("closes with 4401 within a second when the session is invalidated on the other instance", async () => {
    const { a, b } = pair;
    const url = await listen(a);
    const created = await create(b, "ws-remote");
    rpc = await connect(url, { headers: bearer(created.token) });
    expect((await rpc.call("sessions.get", { id: created.session.id })).result).toMatchObject({
      status: "active",
    });
    const started = performance.now();
    const ended = await b.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${created.session.id}`,
      headers: adminHeaders,
    });
    expect(ended.statusCode).toBe(200);
    const closed = await rpc.closed;
    const elapsed = performance.now() - started;
    expect(closed).toEqual({ code: 4401, reason: "session ended: invalidated" });
    expect(elapsed).toBeLessThan(1_000);
  });
});

describe("WebSocket retry-safe create and revoke-all, two instances on NATS and Postgres", () => {
  let pair: Pair;
  let urlA: string;
  let urlB: string;
  const open: RpcSocket[] = [];
  const connectTo = async (url: string, headers: Record<string, string>) => {
    const rpc = await connect(url, { headers });
    open.push(rpc);
    return rpc;
  };

  beforeAll(async () => {
    pair = await startPair("ws-parity");
    urlA = await listen(pair.a);
    urlB = await listen(pair.b);
  });
  afterAll(async () => {
    for (const rpc of open) rpc.socket.terminate();
    await pair?.close();
  });

  it("a create retried with the same idempotency_key returns the same session and token, once in the log", async () => {
    const ann = await create(pair.a, "wsi-ann");
    const onA = await connectTo(urlA, bearer(ann.token));
    const onB = await connectTo(urlB, bearer(ann.token));
    const before = await pair.a.log.lastPosition();
    const params = { client: "retry", metadata: { a: 1, b: [1, 2] }, idempotency_key: "ws-create-1" };

    const first = await onA.call("sessions.create", params);
    expect(first.result).toMatchObject({ idempotent_replayed: false, session: { user_id: "wsi-ann" } });
    // Over the other instance, with the metadata serialised in another key order: the same request.
    const retry = await onB.call("sessions.create", { ...params, metadata: { b: [1, 2], a: 1 } });
    expect(retry.result?.session?.id).toBe(first.result?.session?.id);
    expect(retry.result?.token).toBe(first.result?.token);
    expect(retry.result?.idempotent_replayed).toBe(true);
    // Scoped as REST scopes Idempotency-Key (caller and operation): the same key over REST finds it too.
    const overRest = await pair.b.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: { ...bearer(ann.token), "idempotency-key": "ws-create-1" },
      payload: { client: "retry", metadata: { a: 1, b: [1, 2] } },
    });
    expect(overRest.statusCode, overRest.body).toBe(201);
    expect(overRest.json()).toMatchObject({ session: { id: first.result?.session?.id } });
    expect(overRest.headers["idempotent-replayed"]).toBe("true");
    expect(await createdSince(pair.a, before, "wsi-ann")).toBe(1);

    // Another user's identical key and request is another caller's: a session of its own.
    const ben = await create(pair.a, "wsi-ben");
    const asBen = await connectTo(urlA, bearer(ben.token));
    const bens = await asBen.call("sessions.create", params);
    expect(bens.result).toMatchObject({ idempotent_replayed: false, session: { user_id: "wsi-ben" } });
    expect(bens.result?.session?.id).not.toBe(first.result?.session?.id);
  });

  it("the same idempotency_key with another request is 422 idempotency_key_reused and appends nothing", async () => {
    const cat = await create(pair.a, "wsi-cat");
    const onA = await connectTo(urlA, bearer(cat.token));
    const onB = await connectTo(urlB, bearer(cat.token));
    const first = await onA.call("sessions.create", { client: "one", idempotency_key: "ws-reuse" });
    expect(first.result?.session).toMatchObject({ client: "one" });
    const after = await pair.a.log.lastPosition();
    for (const rpc of [onA, onB]) {
      const refused = await rpc.call("sessions.create", { client: "two", idempotency_key: "ws-reuse" });
      expect(refused.error).toMatchObject({
        code: 422,
        data: { status: 422, code: "idempotency_key_reused" },
      });
      expect(JSON.stringify(refused)).not.toContain("tss_");
    }
    expect(await createdSince(pair.a, after, "wsi-cat")).toBe(0);

    // REST's rule for the key, checked once access is decided (as on REST: a bad key never outranks 403).
    const malformed = await onA.call("sessions.create", { idempotency_key: "two words" });
    expect(malformed.error).toMatchObject({
      code: -32602,
      data: { code: "invalid_request", detail: "idempotency_key must be 1-255 visible ASCII characters" },
    });
    const tooLong = await onA.call("sessions.create", { idempotency_key: "k".repeat(256) });
    expect(tooLong.error?.code).toBe(-32602);
    const forbidden = await onA.call("sessions.create", { roles: ["admin"], idempotency_key: "two words" });
    expect(forbidden.error).toMatchObject({ code: 403, data: { code: "access_denied" } });
  });

  it("a renew retried with the same idempotency_key appends once; REST finds it with the same key", async () => {
    const renewer = await create(pair.a, "wsi-renewer");
    const onA = await connectTo(urlA, bearer(renewer.token));
    const onB = await connectTo(urlB, bearer(renewer.token));
    const params = { id: renewer.session.id, ttl_seconds: 7200, idempotency_key: "ws-renew-1" };
    const first = await onA.call("sessions.renew", params);
    expect(first.result?.session?.expires_at).toBeDefined();
    const retry = await onB.call("sessions.renew", params);
    expect(retry.result?.session?.expires_at).toBe(first.result?.session?.expires_at);
    const overRest = await pair.b.app.inject({
      method: "POST",
      url: `/v1/sessions/${renewer.session.id}/renew`,
      headers: { ...bearer(renewer.token), "idempotency-key": "ws-renew-1" },
      payload: { ttl_seconds: 7200 },
    });
    expect(overRest.statusCode, overRest.body).toBe(200);
    expect(overRest.json().session.expires_at).toBe(first.result?.session?.expires_at);
    const { events } = await pair.a.log.readStream({ category: "session", id: renewer.session.id });
    expect(events.map((event) => event.type)).toEqual(["SessionCreated", "SessionRenewed"]);

    // REST's rule for the key, as for create.
    const malformed = await onA.call("sessions.renew", {
      id: renewer.session.id,
      idempotency_key: "two words",
    });
    expect(malformed.error).toMatchObject({ code: -32602, data: { code: "invalid_request" } });
  });

  it("revoke_all ends the caller's own sessions, and another user's only for admins", async () => {
    const dan = await create(pair.a, "wsi-dan");
    const dan2 = await create(pair.b, "wsi-dan");
    const dan3 = await create(pair.a, "wsi-dan");
    const eve = await create(pair.a, "wsi-eve");
    const eve2 = await create(pair.b, "wsi-eve");
    const asDan = await connectTo(urlA, bearer(dan.token));

    // A user token cannot end someone else's sessions (REST: 403 on DELETE /v1/users/{id}/sessions).
    const foreign = await asDan.call("sessions.revoke_all", { user_id: "wsi-eve" });
    expect(foreign.error).toMatchObject({ code: 403, data: { code: "access_denied" } });
    expect((await sessionOf(pair.b, eve.session.id)).status).toBe("active");

    // Its own, keeping the calling one (REST: DELETE /v1/sessions?except=current).
    const own = await asDan.call("sessions.revoke_all", { except: "current" });
    expect(own.result).toEqual({ count: 2, user_id: "wsi-dan" });
    for (const ended of [dan2, dan3]) {
      expect(await sessionOf(pair.b, ended.session.id)).toMatchObject({
        status: "invalidated",
        end_reason: "revoke_all",
      });
    }
    expect((await asDan.call("sessions.get", { id: dan.session.id })).result).toMatchObject({
      status: "active",
    });

    // An admin ends another user's sessions, with REST's admin reason and the transport in the audit trail.
    const admin = await create(pair.b, "wsi-admin", ["admin"]);
    const asAdmin = await connectTo(urlB, bearer(admin.token));
    const theirs = await asAdmin.call("sessions.revoke_all", { user_id: "wsi-eve" });
    expect(theirs.result).toEqual({ count: 2, user_id: "wsi-eve" });
    for (const ended of [eve, eve2]) {
      expect(await sessionOf(pair.a, ended.session.id)).toMatchObject({ end_reason: "revoked_by_admin" });
      const { events } = await pair.a.log.readStream({ category: "session", id: ended.session.id });
      expect(events.at(-1)).toMatchObject({ type: "SessionInvalidated", metadata: { source: "ws" } });
    }
    expect((await sessionOf(pair.a, admin.session.id)).status).toBe("active");

    // The admin key has no sessions of its own: it names the user, and that user's sockets close.
    const asKey = await connectTo(urlA, adminHeaders);
    const unnamed = await asKey.call("sessions.revoke_all", {});
    expect(unnamed.error).toMatchObject({ code: -32602, data: { code: "invalid_request" } });
    const last = await asKey.call("sessions.revoke_all", { user_id: "wsi-dan" });
    expect(last.result).toEqual({ count: 1, user_id: "wsi-dan" });
    expect((await asDan.closed).code).toBe(4401);
  });
});
