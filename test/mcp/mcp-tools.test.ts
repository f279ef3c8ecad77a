import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findChromium } from "../../src/adapters/mcp/browser-contexts.ts";
import { toFailure } from "../../src/adapters/mcp/tool-results.ts";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { ADMIN_KEY, eventually, startDistributed } from "../support/tessera.ts";
import {
  bearerHeaders,
  callTool,
  connectMcp,
  listen,
  type McpConnection,
  structured,
  toolError,
  userSession,
} from "./support.ts";

/**
 * Every tool's success and failure paths, called with the SDK client over real HTTP; sessions are
 * initialized on instance A and the tools called on instance B where it matters.
 */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let a: Tessera;
let b: Tessera;
let urlA: string;
let urlB: string;
const open: McpConnection[] = [];

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("mcpt");
  database = await createTestDatabase();
  a = await startDistributed({ prefix, databaseUrl: database.url });
  b = await startDistributed({
    prefix,
    databaseUrl: database.url,
    env: { TESSERA_CHROMIUM_PATH: "/nonexistent/chromium" },
  });
  urlA = await listen(a);
  urlB = await listen(b);
});

afterAll(async () => {
  for (const connection of open) await connection.client.close().catch(() => undefined);
  await a?.close();
  await b?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

async function mcpAs(url: string, headers: Record<string, string>) {
  const connection = await connectMcp(url, headers);
  open.push(connection);
  return connection;
}

/** A user with an api session (the credential) and an MCP session on `url`. */
async function user(userId: string, url = urlA, roles = ["user"]) {
  const session = await userSession(a, userId, { roles });
  return { ...session, mcp: await mcpAs(url, bearerHeaders(session.token)) };
}

const admin = () => mcpAs(urlB, { "x-admin-key": ADMIN_KEY });
const UNKNOWN_ID = "0190a000-0000-7000-8000-000000000000";

describe("list-sessions", () => {
  it("lists the caller's own sessions, with the seed's fields", async () => {
    const u = await user("list-own");
    await a.service.readYourWrites();
    const listed = structured<{
      sessions: Array<Record<string, unknown>>;
      count: number;
      total: number;
      readModel: { position: number; behind: number };
    }>(await callTool(u.mcp, "list-sessions"));
    expect(listed.count).toBe(2);
    expect(listed.total).toBe(2);
    expect(listed.readModel.position).toBeGreaterThan(0);
    expect(listed.readModel.behind).toBe(0);
    const own = listed.sessions.find((s) => s.id === u.sessionId);
    expect(own).toMatchObject({ userId: "list-own", status: "active", kind: "api", metadata: {} });
    expect(Object.keys(own ?? {})).toEqual(
      expect.arrayContaining([
        "id",
        "userId",
        "username",
        "roles",
        "createdAt",
        "expiresAt",
        "lastAccessedAt",
      ]),
    );
  });

  it("pages with limit and cursor, and filters by status", async () => {
    const u = await user("list-pages");
    await userSession(a, "list-pages");
    await a.service.readYourWrites();
    const first = structured<{ sessions: unknown[]; nextCursor: string | null; total: number }>(
      await callTool(u.mcp, "list-sessions", { limit: 2 }),
    );
    expect(first.sessions).toHaveLength(2);
    expect(first.total).toBe(3);
    const second = structured<{ sessions: unknown[]; nextCursor: string | null }>(
      await callTool(u.mcp, "list-sessions", { limit: 2, cursor: first.nextCursor }),
    );
    expect(second.sessions).toHaveLength(1);
    const ended = structured<{ count: number }>(await callTool(u.mcp, "list-sessions", { status: "ended" }));
    expect(ended.count).toBe(0);
  });

  it("another user's sessions: ACCESS_DENIED for a user, listed for an admin", async () => {
    const u = await user("list-nosy");
    const other = await userSession(a, "list-target");
    expect(toolError(await callTool(u.mcp, "list-sessions", { userId: "list-target" }))).toEqual({
      code: "ACCESS_DENIED",
      error: "Only an admin may act on another user's sessions",
    });
    const boss = await admin();
    await eventually(async () => {
      const listed = structured<{ sessions: Array<{ id: string }> }>(
        await callTool(boss, "list-sessions", { userId: "list-target" }),
      );
      return listed.sessions.some((s) => s.id === other.sessionId);
    });
  });

  it("bad input is refused by the schema", async () => {
    const u = await user("list-bad");
    const result = await callTool(u.mcp, "list-sessions", { limit: 1000 });
    expect(result.isError).toBe(true);
  });
});

describe("delete-session", () => {
  it("ends a session on every instance; deleting it again reports how it ended", async () => {
    const u = await user("del-own");
    const victim = await userSession(a, "del-own");
    const deleted = structured(await callTool(u.mcp, "delete-session", { sessionId: victim.sessionId }));
    expect(deleted).toEqual({
      success: true,
      sessionId: victim.sessionId,
      message: "Session deleted successfully",
      status: "invalidated",
      endReason: "revoked",
    });
    await eventually(() => b.validator.validateFromMemory(victim.token)?.valid === false, 2_000);
    const again = structured(await callTool(u.mcp, "delete-session", { sessionId: victim.sessionId }));
    expect(again).toMatchObject({
      success: true,
      message: "Session had already ended",
      endReason: "revoked",
    });
  });

  it("INVALID_SESSION_ID, SESSION_NOT_FOUND, ACCESS_DENIED", async () => {
    const u = await user("del-bad");
    const stranger = await userSession(a, "del-stranger");
    expect(toolError(await callTool(u.mcp, "delete-session", { sessionId: "nope" })).code).toBe(
      "INVALID_SESSION_ID",
    );
    expect(toolError(await callTool(u.mcp, "delete-session", { sessionId: UNKNOWN_ID })).code).toBe(
      "SESSION_NOT_FOUND",
    );
    expect(toolError(await callTool(u.mcp, "delete-session", { sessionId: stranger.sessionId })).code).toBe(
      "ACCESS_DENIED",
    );
    expect(a.validator.validateFromMemory(stranger.token)?.valid).toBe(true);
  });

  it("an admin deletes anyone's session (revoked_by_admin)", async () => {
    const target = await userSession(a, "del-target");
    const boss = await admin();
    const deleted = structured(await callTool(boss, "delete-session", { sessionId: target.sessionId }));
    expect(deleted).toMatchObject({ success: true, endReason: "revoked_by_admin" });
  });

  it("DELETE_FAILED and the other fallbacks never carry internals", () => {
    const { result, unexpected } = toFailure(
      new Error("connect ECONNREFUSED postgres://admin:secret@db:5432"),
      "DELETE_FAILED",
      "Could not delete the session",
    );
    expect(unexpected).toBe(true);
    expect(result).toEqual({
      content: [
        {
          type: "text",
          text: JSON.stringify({ error: "Could not delete the session", code: "DELETE_FAILED" }),
        },
      ],
      isError: true,
    });
  });
});

describe("renew-session", () => {
  it("extends an active session", async () => {
    const u = await user("renew-own");
    const renewed = structured<{ session: { expiresAt: string; id: string } }>(
      await callTool(u.mcp, "renew-session", { sessionId: u.sessionId, ttlSeconds: 7200 }),
    );
    expect(renewed.session.id).toBe(u.sessionId);
    const expected = Date.now() + 7200_000;
    expect(Math.abs(Date.parse(renewed.session.expiresAt) - expected)).toBeLessThan(10_000);
  });

  it("SESSION_ENDED, INVALID_SESSION_ID, SESSION_NOT_FOUND, ACCESS_DENIED", async () => {
    const u = await user("renew-bad");
    const done = await userSession(a, "renew-bad");
    structured(await callTool(u.mcp, "delete-session", { sessionId: done.sessionId }));
    expect(toolError(await callTool(u.mcp, "renew-session", { sessionId: done.sessionId })).code).toBe(
      "SESSION_ENDED",
    );
    expect(toolError(await callTool(u.mcp, "renew-session", { sessionId: "x" })).code).toBe(
      "INVALID_SESSION_ID",
    );
    expect(toolError(await callTool(u.mcp, "renew-session", { sessionId: UNKNOWN_ID })).code).toBe(
      "SESSION_NOT_FOUND",
    );
    const other = await userSession(a, "renew-other");
    expect(toolError(await callTool(u.mcp, "renew-session", { sessionId: other.sessionId })).code).toBe(
      "ACCESS_DENIED",
    );
  });

  it("a viewer may read but not renew", async () => {
    const viewer = await user("renew-viewer", urlA, ["viewer"]);
    structured(await callTool(viewer.mcp, "list-sessions"));
    expect(toolError(await callTool(viewer.mcp, "renew-session", { sessionId: viewer.sessionId })).code).toBe(
      "ACCESS_DENIED",
    );
  });
});

describe("validate-session", () => {
  it("valid tokens answer with session and user; others with the reason", async () => {
    const u = await user("val-caller");
    const target = await userSession(a, "val-target", { roles: ["user"] });
    const valid = structured(await callTool(u.mcp, "validate-session", { token: target.token }));
    expect(valid).toMatchObject({
      valid: true,
      session: { id: target.sessionId, status: "active" },
      user: { id: "val-target", roles: ["user"] },
    });
    expect(structured(await callTool(u.mcp, "validate-session", { token: "garbage" }))).toEqual({
      valid: false,
      reason: "malformed",
    });
    await a.service.invalidate(target.sessionId, "revoked", {
      commandId: `test-${target.sessionId}`,
      actor: { kind: "admin", id: "test" },
      source: "rest",
    });
    await eventually(() => b.validator.validateFromMemory(target.token)?.valid === false, 2_000);
    expect(structured(await callTool(u.mcp, "validate-session", { token: target.token }))).toEqual({
      valid: false,
      reason: "invalidated",
    });
    expect((await callTool(u.mcp, "validate-session", { token: "" })).isError).toBe(true);
  });
});

describe("session-stats", () => {
  it("own stats for a user, global for an admin", async () => {
    const u = await user("stats-own");
    await a.service.readYourWrites();
    const own = structured(await callTool(u.mcp, "session-stats"));
    expect(own).toMatchObject({
      scope: "user",
      active: 2,
      total: 2,
      expired: 0,
      invalidated: 0,
      recycled: 0,
    });
    const boss = await admin();
    const global = structured<{ scope: string; total: number }>(await callTool(boss, "session-stats"));
    expect(global.scope).toBe("global");
    expect(global.total).toBeGreaterThan(2);
  });
});

describe("create-browser-context", () => {
  it("needs a live session the caller owns", async () => {
    const u = await user("browser-bad");
    const other = await userSession(a, "browser-other");
    expect(toolError(await callTool(u.mcp, "create-browser-context", { sessionId: "x" })).code).toBe(
      "INVALID_SESSION_ID",
    );
    expect(
      toolError(await callTool(u.mcp, "create-browser-context", { sessionId: other.sessionId })).code,
    ).toBe("ACCESS_DENIED");
    const done = await userSession(a, "browser-bad");
    structured(await callTool(u.mcp, "delete-session", { sessionId: done.sessionId }));
    expect(
      toolError(await callTool(u.mcp, "create-browser-context", { sessionId: done.sessionId })).code,
    ).toBe("SESSION_ENDED");
  });

  it("without Chromium: BROWSER_UNAVAILABLE naming TESSERA_CHROMIUM_PATH", async () => {
    const u = await user("browser-none", urlB);
    const failed = toolError(await callTool(u.mcp, "create-browser-context", { sessionId: u.sessionId }));
    expect(failed.code).toBe("BROWSER_UNAVAILABLE");
    expect(failed.error).toContain("TESSERA_CHROMIUM_PATH");
  });

  it("with the system Chromium: a context tied to the session, closed when the session ends", async () => {
    const u = await user("browser-ok");
    const result = await callTool(u.mcp, "create-browser-context", {
      sessionId: u.sessionId,
      name: "research",
      options: { headless: true, viewport: { width: 800, height: 600 } },
    });
    if ((await findChromium(undefined)) === undefined) {
      // A machine without Chromium must say so clearly rather than fail obscurely.
      expect(toolError(result).code).toBe("BROWSER_UNAVAILABLE");
      return;
    }
    const context = structured<{ contextId: string; name: string; type: string; status: string }>(result);
    expect(context).toMatchObject({
      name: "research",
      type: "puppeteer",
      status: "active",
      sessionId: u.sessionId,
    });
    expect(a.mcp.tools.browsers?.size).toBe(1);
    structured(await callTool(u.mcp, "delete-session", { sessionId: u.sessionId }));
    expect(await a.mcp.tools.browsers?.sweep()).toBe(1);
    expect(a.mcp.tools.browsers?.size).toBe(0);
  }, 30_000);
});

describe("create-session", () => {
  it("signs a user in: session, session token, JWT access token and refresh token", async () => {
    await a.auth.directory.create({
      username: "mcp-demo",
      password: "demo123!",
      roles: ["user"],
      groups: ["eng"],
    });
    const caller = await user("create-caller");
    const created = structured<{
      sessionId: string;
      userId: string;
      username: string;
      roles: string[];
      expiresAt: string;
      sessionToken: string;
      tokens: { accessToken: string; refreshToken: string; expiresIn: number };
      scope: string;
    }>(
      await callTool(caller.mcp, "create-session", {
        username: "mcp-demo",
        password: "demo123!",
        duration: 7200,
      }),
    );
    expect(created).toMatchObject({
      username: "mcp-demo",
      roles: ["user"],
      scope: "sessions:read sessions:write",
    });
    expect(created.sessionToken).toMatch(/^tss_/);
    expect(created.tokens.refreshToken).toMatch(/^tsr_/);
    expect(created.tokens.accessToken.split(".")).toHaveLength(3);
    expect(created.tokens.expiresIn).toBeGreaterThan(0);
    expect(Math.abs(Date.parse(created.expiresAt) - (Date.now() + 7200_000))).toBeLessThan(10_000);
    // The new session is valid on the other instance at once, and both its tokens authenticate REST calls.
    const validated = await b.app.inject({
      method: "POST",
      url: "/v1/sessions/validate",
      payload: { token: created.sessionToken },
    });
    expect(validated.json()).toMatchObject({ valid: true, session: { id: created.sessionId, kind: "api" } });
    const viaJwt = await b.app.inject({
      method: "GET",
      url: `/v1/sessions/${created.sessionId}`,
      headers: bearerHeaders(created.tokens.accessToken),
    });
    expect(viaJwt.statusCode).toBe(200);
  });

  it("INVALID_CREDENTIALS for a wrong password or unknown user; AUTH_FAILED when the roles grant nothing", async () => {
    await a.auth.directory.create({
      username: "mcp-guest",
      password: "guest123!",
      roles: ["guest"],
      groups: [],
    });
    const caller = await user("create-bad");
    expect(
      toolError(
        await callTool(caller.mcp, "create-session", { username: "mcp-demo", password: "wrong-password" }),
      ),
    ).toEqual({ code: "INVALID_CREDENTIALS", error: "Invalid username or password" });
    expect(
      toolError(
        await callTool(caller.mcp, "create-session", { username: "nobody-here", password: "whatever1" }),
      ).code,
    ).toBe("INVALID_CREDENTIALS");
    expect(
      toolError(
        await callTool(caller.mcp, "create-session", { username: "mcp-guest", password: "guest123!" }),
      ).code,
    ).toBe("AUTH_FAILED");
    expect((await callTool(caller.mcp, "create-session", { username: "mcp-demo" })).isError).toBe(true);
  });
});

describe("recycle-sessions", () => {
  it("another user's: ACCESS_DENIED for a user, done for an admin; an admin key must name the user", async () => {
    const u = await user("recycle-nosy");
    const target = await userSession(a, "recycle-target");
    expect(toolError(await callTool(u.mcp, "recycle-sessions", { userId: "recycle-target" })).code).toBe(
      "ACCESS_DENIED",
    );
    const boss = await admin();
    expect(toolError(await callTool(boss, "recycle-sessions")).code).toBe("INVALID_INPUT");
    await a.service.readYourWrites();
    const done = structured(await callTool(boss, "recycle-sessions", { userId: "recycle-target" }));
    expect(done).toEqual({ recycled: 1, userId: "recycle-target" });
    await eventually(() => a.validator.validateFromMemory(target.token)?.valid === false, 2_000);
    expect(a.validator.validateFromMemory(target.token)).toMatchObject({ valid: false, reason: "recycled" });
  });
});

describe("unknown tools", () => {
  it("calling a tool that does not exist is a tool error naming it", async () => {
    const u = await user("unknown-tool");
    const result = await callTool(u.mcp, "drop-database");
    expect(result.isError).toBe(true);
    expect(JSON.stringify(result.content)).toContain("Tool drop-database not found");
  });
});
