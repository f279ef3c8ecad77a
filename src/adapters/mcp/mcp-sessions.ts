import type { Logger } from "pino";
import type { Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import type { SessionService } from "../../app/session-service.ts";
import type { InvalidReason, RequestFacts, Validator } from "../../app/validator.ts";
import type { ValidationEntry } from "../../projections/validation-entry.ts";

/**
 * MCP transport sessions are Tessera sessions of kind `mcp` (DESIGN §7). The `Mcp-Session-Id` a client
 * holds is the session's `tss_` token — the secret, so it cannot be guessed from the public id — and every
 * request resolves it through the shared validator, which is what lets any instance serve any request.
 */
export type McpSessionDeps = {
  service: SessionService;
  validator: Validator;
  logger: Logger;
  /** Absolute lifetime of an MCP session; inactivity (TESSERA_MCP_IDLE_TIMEOUT_SECONDS) usually ends it first. */
  sessionTtlSeconds: number;
  recycleSession?: ((sessionId: string, context: CommandContext) => Promise<unknown>) | undefined;
};

export type ResolvedMcpSession =
  | { ok: true; entry: ValidationEntry }
  | { ok: false; reason: InvalidReason | "not_mcp" | "not_owner" | "claims_changed" };

/** The user an MCP session belongs to. An admin-key caller gets a pseudo-user that can do nothing. */
function ownerOf(principal: Principal) {
  if (principal.kind === "admin") {
    return {
      userId: principal.actor.id,
      username: "admin",
      roles: [] as string[],
      groups: [] as string[],
      scope: ["sessions:read"],
    };
  }
  return {
    userId: principal.userId,
    username: principal.username,
    roles: principal.roles,
    groups: principal.groups,
    // The token doubles as a REST bearer: it must never grant more than the credential that opened it.
    scope: [...principal.permissions].sort(),
    // Opened under an IdP token: part of that IdP sign-in, so a back-channel logout by its sid ends it.
    idpSessionId: principal.idpSessionId,
  };
}

const sameSet = (a: readonly string[], b: readonly string[]) => {
  if (a.length !== b.length) return false;
  const left = [...a].sort();
  const right = [...b].sort();
  return left.every((value, index) => value === right[index]);
};

export function createMcpSessions(deps: McpSessionDeps) {
  return {
    /** `initialize`: a new MCP session for the caller; returns its token (the Mcp-Session-Id). */
    async open(principal: Principal, facts: RequestFacts, context: CommandContext) {
      const owner = ownerOf(principal);
      const created = await deps.service.create(
        {
          ...owner,
          kind: "mcp",
          ttlSeconds: Math.min(deps.sessionTtlSeconds, deps.service.policy.maxLifetimeSeconds),
          client: "mcp",
          ipAddress: facts.ip,
          userAgent: facts.userAgent,
          metadata: {},
          principal: principal.kind === "admin" ? "admin" : `user:${owner.userId}`,
        },
        context,
      );
      return { token: created.token, sessionId: created.session.sessionId };
    },

    /**
     * Every later request: the id must be a live MCP session of this caller (validation also records
     * activity, so inactivity is measured from the last request). A caller whose roles or groups differ
     * from the session's gets it recycled, and — like every other failure here — a 404 that tells the
     * client to initialize again.
     */
    async resolve(
      token: string,
      principal: Principal,
      facts: RequestFacts,
      context: CommandContext,
      options: { checkClaims: boolean } = { checkClaims: true },
    ): Promise<ResolvedMcpSession> {
      const outcome = await deps.validator.validate(token, facts);
      if (!outcome.valid) return { ok: false, reason: outcome.reason };
      const entry = outcome.entry;
      if (entry.kind !== "mcp") return { ok: false, reason: "not_mcp" };
      const owner = ownerOf(principal);
      if (entry.userId !== owner.userId) return { ok: false, reason: "not_owner" };
      if (
        options.checkClaims &&
        principal.kind === "user" &&
        (!sameSet(entry.roles, principal.roles) || !sameSet(entry.groups, principal.groups))
      ) {
        if (deps.recycleSession) await deps.recycleSession(entry.sessionId, context);
        else deps.logger.warn({ sessionId: entry.sessionId }, "claims changed but recycling is not wired");
        return { ok: false, reason: "claims_changed" };
      }
      return { ok: true, entry };
    },

    /** `DELETE /mcp`. */
    async end(sessionId: string, context: CommandContext) {
      await deps.service.invalidate(sessionId, "logout", context);
    },
  };
}

export type McpSessions = ReturnType<typeof createMcpSessions>;
