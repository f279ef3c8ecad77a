import { z } from "zod";
import { isAdmin } from "../../app/access.ts";
import { statsFor } from "../../app/session-stats.ts";
import { viewFromRow, viewFromState } from "../http/schemas.ts";
import { storableText } from "../http/storable-text.ts";
import type { McpToolDeps, ToolCaller, ToolRegistry } from "./tool-deps.ts";
import { createToolHelpers, sessionIdInput } from "./tool-helpers.ts";
import { ToolFailure } from "./tool-results.ts";
import { toolSession, toToolSession } from "./tool-views.ts";

const MAX_TTL_SECONDS = 31_536_000;

const createSessionTool = {
  title: "Create session",
  description:
    "Sign a user in with username and password and create a Tessera session. Returns the session, its bearer token (tss_…), a JWT access token and a refresh token. Errors: INVALID_CREDENTIALS when the username or password is wrong, AUTH_FAILED otherwise.",
  inputSchema: {
    username: z.string().min(1).max(256).describe("The user's login name"),
    password: z.string().min(1).max(1024).describe("The user's password"),
    duration: z
      .number()
      .int()
      .min(1)
      .max(MAX_TTL_SECONDS)
      .optional()
      .describe("Session lifetime in seconds (default 3600; never past the configured maximum lifetime)"),
  },
  outputSchema: {
    sessionId: z.string(),
    userId: z.string(),
    username: z.string(),
    roles: z.array(z.string()),
    createdAt: z.string(),
    expiresAt: z.string(),
    sessionToken: z.string().describe("Bearer token for the REST API and for MCP (tss_…)"),
    sessionUrl: z
      .string()
      .optional()
      .describe("MCP server URL that carries sessionToken (…/mcp/u/tss_…); only with TESSERA_PUBLIC_URL set"),
    tokens: z.object({
      accessToken: z.string().describe("JWT access token"),
      refreshToken: z.string().describe("Refresh token (tsr_…), rotated on every use"),
      expiresIn: z.number().describe("Access token lifetime in seconds"),
    }),
    scope: z.string().describe("Granted scopes, space-separated"),
  },
  annotations: { destructiveHint: false, openWorldHint: false },
};

// The same figures REST sends as tessera-read-model-* headers (docs/architecture.md).
const readModelFreshness = z
  .object({
    position: z.number().describe("Log position the read model had applied when queried"),
    behind: z.number().describe("Log positions it was short of this instance's last write (0: all included)"),
  })
  .describe("How current the answer is");

const listSessionsTool = {
  title: "List sessions",
  description:
    "List sessions of a user (default: the caller's own active sessions). Listing another user's sessions needs the admin role; an admin without userId sees everyone's.",
  inputSchema: {
    userId: storableText({ min: 1, max: 256 }).optional().describe("Whose sessions; defaults to the caller"),
    status: z
      .enum(["active", "ended", "all"])
      .optional()
      .describe("Which sessions: active (default), ended, or all"),
    limit: z.number().int().min(1).max(100).optional().describe("Page size, 1-100 (default 20)"),
    cursor: z.string().max(512).optional().describe("nextCursor from a previous page"),
  },
  outputSchema: {
    sessions: z.array(toolSession),
    count: z.number().describe("Sessions on this page"),
    total: z.number().describe("Sessions matching in all pages"),
    nextCursor: z.string().nullable(),
    readModel: readModelFreshness,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
};

const deleteSessionTool = {
  title: "Delete session",
  description:
    "End (invalidate) a session now; its tokens stop working on every instance at once. Idempotent: deleting an ended session reports how it ended. Errors: INVALID_SESSION_ID, SESSION_NOT_FOUND, ACCESS_DENIED, DELETE_FAILED.",
  inputSchema: { sessionId: sessionIdInput },
  outputSchema: {
    success: z.literal(true),
    sessionId: z.string(),
    message: z.string(),
    status: z.string(),
    endReason: z.string(),
  },
  annotations: { destructiveHint: true, idempotentHint: true, openWorldHint: false },
};

const renewSessionTool = {
  title: "Renew session",
  description:
    "Extend an active session's expiry to now + ttlSeconds (never past its absolute maximum lifetime). Errors: INVALID_SESSION_ID, SESSION_NOT_FOUND, ACCESS_DENIED, SESSION_ENDED.",
  inputSchema: {
    sessionId: sessionIdInput,
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_TTL_SECONDS)
      .optional()
      .describe("New lifetime from now, in seconds (default: the configured session TTL)"),
  },
  outputSchema: { success: z.literal(true), session: toolSession },
  annotations: { destructiveHint: false, idempotentHint: false, openWorldHint: false },
};

const validateSessionTool = {
  title: "Validate session token",
  description:
    "Is this session token (tss_…) valid now? Answers valid=true with the session and user, or valid=false with a reason: malformed, not_found, expired, invalidated, recycled or binding_mismatch.",
  inputSchema: {
    token: z.string().min(1).max(512).describe("The session's bearer token (tss_…)"),
    clientIp: storableText({ max: 64 })
      .optional()
      .describe("IP of the end user, when the session is IP-bound"),
    userAgent: storableText({ max: 1024 }).optional().describe("User agent of the end user, when UA-bound"),
  },
  outputSchema: {
    valid: z.boolean(),
    reason: z.string().optional(),
    session: toolSession.optional(),
    user: z
      .object({
        id: z.string(),
        username: z.string(),
        roles: z.array(z.string()),
        groups: z.array(z.string()),
      })
      .optional(),
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
};

const recycleSessionsTool = {
  title: "Recycle sessions",
  description:
    "End every live session of a user with reason 'recycled' so that clients sign in (or MCP clients re-initialize) and pick up current roles and groups. Defaults to the caller's own sessions, including this MCP session; another user's needs the admin role.",
  inputSchema: {
    userId: storableText({ min: 1, max: 256 }).optional().describe("Whose sessions; defaults to the caller"),
  },
  outputSchema: { recycled: z.number(), userId: z.string() },
  annotations: { destructiveHint: true, idempotentHint: true, openWorldHint: false },
};

const sessionStatsTool = {
  title: "Session statistics",
  description:
    "Counts of sessions by status, sessions created today and the last activity: the caller's own, or global for admins.",
  inputSchema: {},
  outputSchema: {
    active: z.number(),
    expired: z.number(),
    invalidated: z.number(),
    recycled: z.number(),
    total: z.number(),
    createdToday: z.number(),
    lastActivityAt: z.string().nullable(),
    scope: z.enum(["user", "global"]),
    readModel: readModelFreshness,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
};

/**
 * The session tools of DESIGN §7, named and shaped as in the Puppeteer-MCP seed. Each one calls the same
 * session service, read model and validator the REST routes call, under the same access rules.
 */
export function registerSessionTools(server: ToolRegistry, deps: McpToolDeps, caller: ToolCaller) {
  const { service, clock } = deps;
  const { guarded, loadOwned, requirePermission, targetUser, context } = createToolHelpers(deps, caller);

  server.registerTool("create-session", createSessionTool, ({ username, password, duration }) =>
    guarded("create-session", "AUTH_FAILED", "Authentication failed", async () => {
      if (!deps.passwordLogin) throw new ToolFailure("AUTH_FAILED", "Password login is not available");
      const login = await deps.passwordLogin(
        {
          username,
          password,
          ttlSeconds: duration,
          kind: "api",
          ip: caller.facts.ip,
          userAgent: caller.facts.userAgent,
        },
        context(),
      );
      const view = viewFromState(login.session, clock.now());
      return {
        sessionId: view.id,
        userId: view.user_id,
        username: view.username,
        roles: view.roles,
        createdAt: view.created_at,
        expiresAt: view.expires_at,
        sessionToken: login.token,
        sessionUrl: deps.sessionUrl?.(login.token),
        tokens: {
          accessToken: login.accessToken,
          refreshToken: login.refreshToken,
          expiresIn: login.expiresIn,
        },
        scope: login.scope,
      };
    }),
  );

  server.registerTool("list-sessions", listSessionsTool, ({ userId, status, limit, cursor }) =>
    guarded("list-sessions", "LIST_FAILED", "Could not list sessions", async () => {
      const target = targetUser(userId, "sessions:read");
      const readModel = await service.readYourWrites();
      const now = clock.now();
      const page = await deps.readModel.listSessions({
        userId: target,
        status: status ?? "active",
        limit: limit ?? 20,
        cursor,
        now,
      });
      const sessions = page.sessions.map((row) => toToolSession(viewFromRow(row, now)));
      return { sessions, count: sessions.length, total: page.total, nextCursor: page.nextCursor, readModel };
    }),
  );

  server.registerTool("delete-session", deleteSessionTool, ({ sessionId }) =>
    guarded("delete-session", "DELETE_FAILED", "Could not delete the session", async () => {
      const existing = await loadOwned(sessionId, "sessions:write");
      const { principal } = caller;
      const own = principal.kind === "user" && principal.userId === existing.userId;
      const alreadyEnded = existing.status !== "active";
      const ended = await service.invalidate(sessionId, own ? "revoked" : "revoked_by_admin", context());
      const view = viewFromState(ended, clock.now());
      return {
        success: true as const,
        sessionId,
        message: alreadyEnded ? "Session had already ended" : "Session deleted successfully",
        status: view.status,
        endReason: view.end_reason ?? "revoked",
      };
    }),
  );

  server.registerTool("renew-session", renewSessionTool, ({ sessionId, ttlSeconds }) =>
    guarded("renew-session", "RENEW_FAILED", "Could not renew the session", async () => {
      await loadOwned(sessionId, "sessions:write");
      const renewed = await service.renew(sessionId, ttlSeconds, context());
      if (renewed.status !== "active") {
        throw new ToolFailure("SESSION_ENDED", `Session has ended (${renewed.endReason})`);
      }
      return { success: true as const, session: toToolSession(viewFromState(renewed, clock.now())) };
    }),
  );

  server.registerTool("validate-session", validateSessionTool, ({ token, clientIp, userAgent }) =>
    guarded("validate-session", "VALIDATE_FAILED", "Could not validate the token", async () => {
      const outcome = await deps.validator.validate(token, {
        ip: clientIp ?? caller.facts.ip,
        userAgent: userAgent ?? caller.facts.userAgent,
      });
      if (!outcome.valid) return { valid: false, reason: outcome.reason };
      const e = outcome.entry;
      const session = await service.getAtLeast(e.sessionId, e.position);
      if (!session) return { valid: false, reason: "not_found" };
      return {
        valid: true,
        session: toToolSession(viewFromState(session, clock.now())),
        user: { id: e.userId, username: e.username, roles: e.roles, groups: e.groups },
      };
    }),
  );

  server.registerTool("recycle-sessions", recycleSessionsTool, ({ userId }) =>
    guarded("recycle-sessions", "RECYCLE_FAILED", "Could not recycle the sessions", async () => {
      const target = targetUser(userId, "sessions:write");
      if (target === undefined) throw new ToolFailure("INVALID_INPUT", "userId is required");
      if (!deps.recycleUser) throw new ToolFailure("NOT_AVAILABLE", "Recycling is not available");
      const recycled = await deps.recycleUser(target, context());
      return { recycled, userId: target };
    }),
  );

  server.registerTool("session-stats", sessionStatsTool, () =>
    guarded("session-stats", "STATS_FAILED", "Could not compute statistics", async () => {
      const { principal } = caller;
      if (!isAdmin(principal)) requirePermission("sessions:read");
      const { stats, scope, freshness } = await statsFor(principal, {
        service,
        readModel: deps.readModel,
        clock,
      });
      return {
        active: stats.active,
        expired: stats.expired,
        invalidated: stats.invalidated,
        recycled: stats.recycled,
        total: stats.total,
        createdToday: stats.createdToday,
        lastActivityAt: stats.lastActivityAt?.toISOString() ?? null,
        scope,
        readModel: freshness,
      };
    }),
  );
}
