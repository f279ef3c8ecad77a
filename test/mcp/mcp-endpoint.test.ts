import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { ADMIN_KEY, adminHeaders, eventually, type Pair, startPair } from "../support/tessera.ts";
import {
  bearerHeaders,
  callTool,
  connectMcp,
  httpFailure,
  initializeMessage,
  listen,
  MCP_ACCEPT,
  MCP_TOOL_NAMES,
  rawPost,
  structured,
  userSession,
} from "./support.ts";

/**
 * /mcp on two instances sharing the real NATS and Postgres: the MCP session lifecycle (initialize, continue
 * anywhere, DELETE, 400/401/403/404/405) driven by the SDK's own client over real HTTP.
 */
let pair: Pair;
let a: Tessera;
let b: Tessera;
let urlA: string;
let urlB: string;

beforeAll(async () => {
  pair = await startPair("mcp");
  ({ a, b } = pair);
  urlA = await listen(a);
  urlB = await listen(b);
});

afterAll(async () => {
  await pair?.close();
});

async function sessionView(on: Tessera, sessionId: string) {
  const response = await on.app.inject({
    method: "GET",
    url: `/v1/sessions/${sessionId}`,
    headers: adminHeaders,
  });
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as {
    id: string;
    user_id: string;
    kind: string;
    status: string;
    end_reason: string | null;
    roles: string[];
    idle_expires_at: string | null;
  };
}

const sessionIdOf = (token: string) => token.slice(4, 40);

describe("MCP sessions are Tessera sessions", () => {
  it("initialize creates an mcp session for the caller and returns its token as Mcp-Session-Id", async () => {
    const alice = await userSession(a, "alice", { roles: ["user"], groups: ["eng"] });
    const mcp = await connectMcp(urlA, bearerHeaders(alice.token));
    const header = mcp.transport.sessionId ?? "";
    expect(header).toMatch(/^tss_[0-9a-f-]{36}_[A-Za-z0-9_-]{43}$/);
    const view = await sessionView(a, sessionIdOf(header));
    expect(view).toMatchObject({ user_id: "alice", kind: "mcp", status: "active", roles: ["user"] });
    // The MCP idle timeout (30 min by default) applies from the start.
    expect(Date.parse(view.idle_expires_at ?? "")).toBeGreaterThan(Date.now() + 29 * 60_000);
    expect(mcp.client.getServerVersion()?.name).toBe("tessera");
    const tools = await mcp.client.listTools();
    expect(tools.tools.map((tool) => tool.name).sort()).toEqual(MCP_TOOL_NAMES);
    for (const tool of tools.tools) {
      expect(tool.description?.length ?? 0, tool.name).toBeGreaterThan(40);
      expect(tool.outputSchema, tool.name).toBeDefined();
    }
    const create = tools.tools.find((tool) => tool.name === "create-session");
    expect(create?.inputSchema.required).toEqual(["username", "password"]);
    expect(create?.inputSchema.properties?.duration).toMatchObject({ type: "integer" });
    await mcp.client.close();
  });

  it("a session initialized on one instance continues on the other", async () => {
    const bob = await userSession(a, "bob");
    const onA = await connectMcp(urlA, bearerHeaders(bob.token));
    const sessionId = onA.transport.sessionId ?? "";
    const onB = await connectMcp(urlB, bearerHeaders(bob.token), sessionId);
    const stats = structured<{ scope: string; active: number }>(await callTool(onB, "session-stats"));
    expect(stats.scope).toBe("user");
    // Lists and stats come from the read model: B sees A's writes once the projection has them.
    await eventually(async () => {
      const listed = structured<{ sessions: Array<{ id: string; kind: string }> }>(
        await callTool(onB, "list-sessions"),
      );
      return listed.sessions.some((s) => s.id === sessionIdOf(sessionId) && s.kind === "mcp");
    });
    const after = structured<{ active: number }>(await callTool(onB, "session-stats"));
    expect(after.active).toBe(2); // bob's api session and his MCP session
    await onA.client.close();
    await onB.client.close();
  });

  it("DELETE /mcp on one instance ends the session; the other then answers 404", async () => {
    const carol = await userSession(a, "carol");
    const onA = await connectMcp(urlA, bearerHeaders(carol.token));
    const sessionId = onA.transport.sessionId ?? "";
    const onB = await connectMcp(urlB, bearerHeaders(carol.token), sessionId);
    structured(await callTool(onB, "session-stats"));
    await onA.transport.terminateSession();
    // The ending reaches B's in-memory view through the KV watch within milliseconds.
    const elapsed = await eventually(() => b.validator.validateFromMemory(sessionId)?.valid === false, 2_000);
    expect(elapsed).toBeLessThan(500);
    expect(await httpFailure(() => callTool(onB, "session-stats"))).toBe(404);
    expect(await sessionView(b, sessionIdOf(sessionId))).toMatchObject({
      status: "invalidated",
      end_reason: "logout",
    });
    // A second DELETE of the ended session is a 404 too.
    const again = await fetch(new URL("/mcp", urlB), {
      method: "DELETE",
      headers: { ...bearerHeaders(carol.token), "mcp-session-id": sessionId },
    });
    expect(again.status).toBe(404);
    // The client may start over.
    const fresh = await connectMcp(urlB, bearerHeaders(carol.token));
    structured(await callTool(fresh, "session-stats"));
    await fresh.client.close();
  });

  it("a session invalidated through REST answers 404; re-initializing works", async () => {
    const dave = await userSession(a, "dave");
    const mcp = await connectMcp(urlA, bearerHeaders(dave.token));
    const sessionId = mcp.transport.sessionId ?? "";
    const ended = await b.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${sessionIdOf(sessionId)}`,
      headers: bearerHeaders(dave.token),
    });
    expect(ended.statusCode).toBe(200);
    await eventually(() => a.validator.validateFromMemory(sessionId)?.valid === false, 2_000);
    expect(await httpFailure(() => callTool(mcp, "session-stats"))).toBe(404);
    const again = await connectMcp(urlA, bearerHeaders(dave.token));
    expect(again.transport.sessionId).not.toBe(sessionId);
    structured(await callTool(again, "session-stats"));
    await again.client.close();
  });
});

describe("refusals", () => {
  it("a non-initialize request without Mcp-Session-Id is a 400", async () => {
    const erin = await userSession(a, "erin");
    const response = await rawPost(urlA, bearerHeaders(erin.token), {
      jsonrpc: "2.0",
      id: 2,
      method: "tools/list",
    });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ jsonrpc: "2.0", error: { code: -32000 } });
  });

  it("unknown, malformed, non-MCP and someone else's session ids are 404", async () => {
    const frank = await userSession(a, "frank");
    const grace = await userSession(a, "grace");
    const graces = await connectMcp(urlA, bearerHeaders(grace.token));
    const list = { jsonrpc: "2.0", id: 3, method: "tools/list" };
    const ids = {
      malformed: "not-a-session",
      unknown: `tss_${sessionIdOf(frank.token).slice(0, 30)}000000_${"A".repeat(43)}`,
      wrongSecret: `${(graces.transport.sessionId ?? "").slice(0, 41)}${"B".repeat(43)}`,
      notMcp: frank.token,
      someoneElses: graces.transport.sessionId ?? "",
    };
    for (const [label, id] of Object.entries(ids)) {
      const response = await rawPost(urlB, { ...bearerHeaders(frank.token), "mcp-session-id": id }, list);
      expect(response.status, label).toBe(404);
      expect(response.body, label).toMatchObject({ error: { code: -32001, message: "Session not found" } });
    }
    // Grace's session is untouched by Frank's attempts.
    structured(await callTool(graces, "session-stats"));
    await graces.client.close();
  });

  it("no or bad credentials are a 401 with WWW-Authenticate", async () => {
    const none = await rawPost(urlA, {}, initializeMessage("2025-11-25"));
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    const bad = await rawPost(urlA, bearerHeaders(`tss_${"0".repeat(36)}_${"x".repeat(43)}`), {
      ...initializeMessage("2025-11-25"),
    });
    expect(bad.status).toBe(401);
    expect(await httpFailure(() => connectMcp(urlB, bearerHeaders("garbage")))).toBe(401);
  });

  it("refuses foreign Host and Origin headers (DNS rebinding), accepts loopback ones", async () => {
    const henry = await userSession(a, "henry");
    const inject = (headers: Record<string, string>) =>
      a.app.inject({
        method: "POST",
        url: "/mcp",
        headers: { ...MCP_ACCEPT, ...bearerHeaders(henry.token), ...headers },
        payload: initializeMessage("2025-11-25"),
      });
    const evilHost = await inject({ host: "evil.example:8080" });
    expect(evilHost.statusCode).toBe(403);
    expect(evilHost.json()).toMatchObject({ error: { message: "Forbidden: Host not allowed" } });
    const evilOrigin = await inject({ host: "127.0.0.1:8080", origin: "http://evil.example" });
    expect(evilOrigin.statusCode).toBe(403);
    expect(evilOrigin.json()).toMatchObject({ error: { message: "Forbidden: Origin not allowed" } });
    const nullOrigin = await inject({ host: "localhost", origin: "null" });
    expect(nullOrigin.statusCode).toBe(403);
    const local = await inject({ host: "localhost:3000", origin: "http://localhost:5173" });
    expect(local.statusCode).toBe(200);
    expect(local.headers["mcp-session-id"]).toMatch(/^tss_/);
  });

  it("GET /mcp is 405 (no SSE stream); unsupported MCP-Protocol-Version is 400", async () => {
    const get = await fetch(new URL("/mcp", urlA), { headers: { accept: "text/event-stream" } });
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST, DELETE");
    const ivan = await userSession(a, "ivan");
    const mcp = await connectMcp(urlA, bearerHeaders(ivan.token));
    const response = await rawPost(
      urlB,
      {
        ...bearerHeaders(ivan.token),
        "mcp-session-id": mcp.transport.sessionId ?? "",
        "mcp-protocol-version": "1999-01-01",
      },
      { jsonrpc: "2.0", id: 4, method: "tools/list" },
    );
    expect(response.status).toBe(400);
    await mcp.client.close();
  });

  it("an initialize the transport refuses (Accept) creates no session", async () => {
    const judy = await userSession(a, "judy");
    const before = await a.app.inject({
      method: "GET",
      url: "/v1/sessions?user_id=judy",
      headers: adminHeaders,
    });
    const response = await fetch(new URL("/mcp", urlA), {
      method: "POST",
      headers: {
        ...bearerHeaders(judy.token),
        accept: "application/json",
        "content-type": "application/json",
      },
      body: JSON.stringify(initializeMessage("2025-11-25")),
    });
    expect(response.status).toBe(406);
    expect(response.headers.get("mcp-session-id")).toBeNull();
    const after = await a.app.inject({
      method: "GET",
      url: "/v1/sessions?user_id=judy",
      headers: adminHeaders,
    });
    expect((after.json() as { total: number }).total).toBe((before.json() as { total: number }).total);
  });
});

describe("protocol versions", () => {
  it.each(["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"])("initialize with %s", async (version) => {
    const kim = await userSession(a, `kim-${version}`);
    const init = await rawPost(urlA, bearerHeaders(kim.token), initializeMessage(version));
    expect(init.status).toBe(200);
    expect(init.body).toMatchObject({
      result: { protocolVersion: version, serverInfo: { name: "tessera" } },
    });
    const sessionId = init.headers.get("mcp-session-id") ?? "";
    expect(sessionId).toMatch(/^tss_/);
    const headers = {
      ...bearerHeaders(kim.token),
      "mcp-session-id": sessionId,
      "mcp-protocol-version": version,
    };
    const initialized = await rawPost(urlB, headers, { jsonrpc: "2.0", method: "notifications/initialized" });
    expect(initialized.status).toBe(202);
    const called = await rawPost(urlB, headers, {
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "session-stats", arguments: {} },
    });
    expect(called.status).toBe(200);
    expect(called.body).toMatchObject({ result: { structuredContent: { scope: "user" } } });
  });

  it("an unknown requested version is answered with the latest", async () => {
    const lee = await userSession(a, "lee");
    const init = await rawPost(urlA, bearerHeaders(lee.token), initializeMessage("2023-01-01"));
    expect(init.body).toMatchObject({ result: { protocolVersion: "2025-11-25" } });
  });
});

describe("admin key", () => {
  it("an x-admin-key caller gets its own MCP session and admin tools", async () => {
    const mcp = await connectMcp(urlA, { "x-admin-key": ADMIN_KEY });
    const stats = structured<{ scope: string }>(await callTool(mcp, "session-stats"));
    expect(stats.scope).toBe("global");
    const view = await sessionView(a, sessionIdOf(mcp.transport.sessionId ?? ""));
    expect(view).toMatchObject({ kind: "mcp", user_id: "admin-key", roles: [] });
    await mcp.client.close();
  });
});
