import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UserDirectory } from "../../src/app/ports.ts";
import type { SessionService } from "../../src/app/session-service.ts";
import { createUserAdmin } from "../../src/app/user-admin.ts";
import type { Tessera } from "../../src/main.ts";
import { callTool, connectMcp, listen, type McpConnection, toolError, userSession } from "../mcp/support.ts";
import { bearer, startEmbedded } from "../support/tessera.ts";

/**
 * Security events with NIST 800-53 tags (DESIGN §9): every authorization refusal (REST 403, MCP
 * ACCESS_DENIED) is logged at warn with ac-3 + au-3, the actor, where and the missing permission; refresh
 * rotation and reuse carry ia-5. Never a token.
 */

type LogLine = Record<string, unknown> & { level: number; msg: string };
const lines: LogLine[] = [];
const raw: string[] = [];
let tessera: Tessera;
let baseUrl: string;
let mcp: McpConnection | undefined;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) {
        if (line.trim() === "") continue;
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      }
      done();
    },
  });
  tessera = await startEmbedded({}, { logger: pino({ level: "info" }, sink) });
  baseUrl = await listen(tessera);
});

afterAll(async () => {
  await mcp?.client.close();
  await tessera?.close();
});

const events = (event: string) => lines.filter((line) => line.event === event);
const WARN = 40;

async function login(username: string, password: string) {
  const response = await tessera.app.inject({
    method: "POST",
    url: "/v1/auth/token",
    payload: { grant_type: "password", username, password },
  });
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as { access_token: string; refresh_token: string; session_id: string };
}

describe("authorization refusals (ac-3)", () => {
  it("a REST 403 is a warn security event naming the actor, route and missing permission", async () => {
    const viewer = await login("viewer", "viewer123!");
    const refused = await tessera.app.inject({
      method: "DELETE",
      url: "/v1/users/someone-else/sessions",
      headers: bearer(viewer.access_token),
    });
    expect(refused.statusCode).toBe(403);
    // The body says nothing new: the permission is for the log only.
    expect(refused.json()).not.toHaveProperty("permission");

    const [event] = events("access_denied");
    expect(event).toMatchObject({
      level: WARN,
      component: "authz",
      nist: ["ac-3", "au-3"],
      surface: "rest",
      route: "DELETE /v1/users/:id/sessions",
      permission: "admin:sessions",
      actor: { kind: "user" },
      via: "jwt",
      sessionId: viewer.session_id,
    });
    expect(event?.userId).toEqual((event?.actor as { id: string } | undefined)?.id);
    expect(event?.requestId).toEqual(expect.any(String));
  });

  it("a refusal whose check names the permission only in its message still logs it", async () => {
    const viewer = await login("viewer", "viewer123!");
    const before = events("access_denied").length;
    const refused = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: bearer(viewer.access_token),
      payload: {},
    });
    expect(refused.statusCode).toBe(403);
    const event = events("access_denied")[before];
    expect(event).toMatchObject({
      route: "POST /v1/sessions",
      permission: "sessions:write",
      surface: "rest",
    });
  });

  it("an MCP ACCESS_DENIED is the same security event, with the tool as its route", async () => {
    const owner = await userSession(tessera, "mcp-owner");
    const other = await userSession(tessera, "mcp-other");
    mcp = await connectMcp(baseUrl, bearer(other.token));
    const before = events("access_denied").length;
    const result = await callTool(mcp, "delete-session", { sessionId: owner.sessionId });
    expect(toolError(result).code).toBe("ACCESS_DENIED");
    const event = events("access_denied")[before];
    expect(event).toMatchObject({
      level: WARN,
      nist: ["ac-3", "au-3"],
      surface: "mcp",
      route: "tool delete-session",
      permission: "admin:sessions",
      actor: { kind: "user", id: "mcp-other" },
      userId: "mcp-other",
    });
  });
});

describe("authenticator management (ia-5)", () => {
  it("refresh rotation is logged with ia-5, and a replayed refresh token with ia-5 at warn", async () => {
    const demo = await login("demo", "demo123!");
    const refresh = (token: string) =>
      tessera.app.inject({
        method: "POST",
        url: "/v1/auth/token",
        payload: { grant_type: "refresh_token", refresh_token: token },
      });
    expect((await refresh(demo.refresh_token)).statusCode).toBe(200);
    expect(events("refresh_token_rotated").at(-1)).toMatchObject({
      nist: ["ia-5", "au-3"],
      sessionId: demo.session_id,
    });
    expect((await refresh(demo.refresh_token)).statusCode).toBe(400);
    expect(events("refresh_token_reuse").at(-1)).toMatchObject({
      level: WARN,
      nist: expect.arrayContaining(["ia-5", "au-3"]),
      sessionId: demo.session_id,
    });
  });
});

it("no security event carries a token", async () => {
  expect(lines.length).toBeGreaterThan(0);
  const secrets = raw.join("\n");
  expect(secrets).not.toMatch(/tss_[A-Za-z0-9_-]{20,}/);
  expect(secrets).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
});

it("setting and changing a password is an ia-5 event naming the user and who did it, never the password", async () => {
  const logged: Record<string, unknown>[] = [];
  const user = { id: "u-1", username: "operator", roles: ["user"], groups: [], disabled: false };
  const admin = createUserAdmin({
    users: {
      create: async () => user,
      setPassword: async () => user,
      findByUsername: async () => user,
    } as unknown as UserDirectory,
    service: { revokeAll: async () => 0 } as unknown as SessionService,
    security: { info: (record: Record<string, unknown>) => logged.push(record) } as never,
  });
  const context = { commandId: "c-1", actor: { kind: "admin", id: "cli:ops" }, source: "cli" } as const;
  await admin.add({ username: "operator", password: "first-secret-1", roles: ["user"], groups: [] }, context);
  await admin.setPassword("operator", "second-secret-2", context);
  expect(logged).toEqual([
    expect.objectContaining({
      event: "password_set",
      nist: ["ia-5", "au-3"],
      userId: "u-1",
      actor: context.actor,
    }),
    expect.objectContaining({ event: "password_changed", nist: ["ia-5", "au-3"], userId: "u-1" }),
  ]);
  expect(JSON.stringify(logged)).not.toMatch(/secret/);
});
