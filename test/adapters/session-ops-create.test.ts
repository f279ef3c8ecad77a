import { describe, expect, it } from "vitest";
import { HttpProblem } from "../../src/adapters/http/problem.ts";
import { authorizeCreate, type CreateBody, createInput } from "../../src/adapters/session-ops/create.ts";
import { type Permission, type Principal, permissionsFor } from "../../src/app/access.ts";

/**
 * Who may open a session for whom, and what it carries: the one decision REST, WebSocket and gRPC share
 * (src/adapters/session-ops/create.ts). Each refusal is named by status, code and detail.
 */

const adminKey: Principal = { kind: "admin", actor: { kind: "admin", id: "admin" }, via: "admin_key" };

function user(roles: string[], scope?: Permission[], idpSessionId?: string): Principal {
  return {
    kind: "user",
    actor: { kind: "user", id: "alice" },
    via: "session_token",
    userId: "alice",
    username: "Alice",
    roles,
    groups: ["eng"],
    sessionId: "0199a1b2-0000-7000-8000-000000000001",
    permissions: permissionsFor(roles, scope),
    idpSessionId,
  };
}

function refusal(principal: Principal, body: CreateBody) {
  try {
    authorizeCreate(principal, body);
  } catch (error) {
    if (!(error instanceof HttpProblem)) throw error;
    return { status: error.status, code: error.code, detail: error.detail };
  }
  return undefined;
}

function input(principal: Principal, body: CreateBody) {
  const self = authorizeCreate(principal, body);
  return createInput(principal, self, body, "10.0.0.1", "ua", "key-1", undefined);
}

describe("authorizeCreate", () => {
  it.each([
    [
      "admin key without user_id",
      adminKey,
      {},
      400,
      "invalid_request",
      "user_id is required with x-admin-key",
    ],
    ["viewer", user(["viewer"]), {}, 403, "access_denied", "Creating sessions needs sessions:write"],
    [
      "read-scoped user",
      user(["user"], ["sessions:read"]),
      {},
      403,
      "access_denied",
      "Creating sessions needs sessions:write",
    ],
    [
      "user naming someone else",
      user(["user"]),
      { user_id: "bob" },
      403,
      "access_denied",
      "Only an admin may create sessions for another user",
    ],
    [
      "user setting roles",
      user(["user"]),
      { roles: ["admin"] },
      403,
      "access_denied",
      "Only an admin may set roles or groups",
    ],
    [
      "user setting groups",
      user(["user"]),
      { groups: [] },
      403,
      "access_denied",
      "Only an admin may set roles or groups",
    ],
  ] as const)("refuses: %s", (_name, principal, body, status, code, detail) => {
    expect(refusal(principal, body as CreateBody)).toEqual({ status, code, detail });
  });

  it("lets a user open its own session, naming itself or no one", () => {
    expect(refusal(user(["user"]), {})).toBeUndefined();
    expect(refusal(user(["user"]), { user_id: "alice" })).toBeUndefined();
  });
});

describe("createInput", () => {
  it("an own session carries the caller's claims, IdP sid and permissions, never the body's", () => {
    const created = input(user(["user"], undefined, "sid-1"), { kind: "web", metadata: { a: 1 } });
    expect(created).toMatchObject({
      userId: "alice",
      username: "Alice",
      roles: ["user"],
      groups: ["eng"],
      idpSessionId: "sid-1",
      kind: "web",
      metadata: { a: 1 },
      ipAddress: "10.0.0.1",
      userAgent: "ua",
      idempotencyKey: "key-1",
      principal: "user:alice",
    });
    expect([...created.scope].sort()).toEqual(["sessions:read", "sessions:write"]);
  });

  it("a session an admin opens for another user carries the body's claims and no scope", () => {
    const forBob = { user_id: "bob", roles: ["viewer"], groups: ["ops"] };
    for (const [principal, key] of [
      [adminKey, "admin"],
      [user(["admin"], undefined, "sid-1"), "user:alice"],
    ] as const) {
      expect(input(principal, forBob)).toMatchObject({
        userId: "bob",
        username: "bob",
        roles: ["viewer"],
        groups: ["ops"],
        idpSessionId: undefined,
        kind: "api",
        scope: [],
        metadata: {},
        principal: key,
      });
    }
  });

  it("an admin user naming itself (or no one) opens its own session, with its own claims", () => {
    const admin = user(["admin"]);
    for (const body of [{}, { user_id: "alice" }]) {
      const created = input(admin, body);
      expect(created.userId).toBe("alice");
      expect(created.roles).toEqual(["admin"]);
      expect(created.scope.length).toBe(3);
    }
  });
});
