import type { Logger } from "pino";
import { DomainError, invalidGrant } from "../domain/errors.ts";
import type { SessionKind } from "../domain/events.ts";
import type { SecretGenerator } from "../domain/ports.ts";
import type { ExistingSession } from "../domain/session-state.ts";
import { formatToken, hashSecret, parseToken } from "../domain/tokens.ts";
import { type Permission, type Principal, permissionsFor } from "./access.ts";
import type { CommandContext } from "./command-handler.ts";
import type { AccessTokens } from "./jwt.ts";
import type { UserDirectory, UserRecord } from "./ports.ts";
import type { SessionService } from "./session-service.ts";
import type { RequestFacts, Validator } from "./validator.ts";

/**
 * Logging in with a password, refreshing, logging out: the token endpoint's and MCP `create-session`'s
 * shared logic. A login is a SessionCreated (with a refresh token) plus a signed access token; a refresh
 * is a SessionTokensRotated; a logout is a SessionInvalidated (`logout`). Failures are logged as security
 * events (NIST 800-53 tags) without secrets.
 */

/** Scopes a token may carry, in their canonical order. */
export const SCOPES: readonly Permission[] = ["sessions:read", "sessions:write", "admin:sessions"];

/** RFC 6749 §5.2 errors this service raises besides invalid_grant (a DomainError). */
export class OAuthError extends Error {
  constructor(
    readonly error: "invalid_request" | "invalid_scope" | "unsupported_grant_type",
    readonly description: string,
  ) {
    super(description);
    this.name = "OAuthError";
  }
}

/** Command metadata for a login: the actor is only known once the credentials check out. */
export type LoginContext = Omit<CommandContext, "actor">;

export type PasswordLoginInput = {
  username: string;
  password: string;
  /** Requested scopes (space-separated or a list); omitted = everything the user's roles allow. */
  scope?: string | string[] | undefined;
  ttlSeconds?: number | undefined;
  kind?: SessionKind | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
  client?: string | undefined;
};

export type LoginResult = {
  session: ExistingSession;
  user: UserRecord;
  /** The session token (`tss_…`), usable as a Bearer token for the session's whole life. */
  token: string;
  /** The refresh token (`tsr_…`), rotated on every use. */
  refreshToken: string;
  /** A signed JWT access token. */
  accessToken: string;
  /** Seconds until the access token expires. */
  expiresIn: number;
  /** Granted scopes, space-separated. */
  scope: string;
};

export type RefreshResult = {
  session: ExistingSession;
  refreshToken: string;
  accessToken: string;
  expiresIn: number;
  scope: string;
};

export type LoginServiceDeps = {
  users: UserDirectory;
  service: SessionService;
  validator: Validator;
  accessTokens: AccessTokens;
  secrets: SecretGenerator;
  logger?: Logger | undefined;
};

export function createLoginService(deps: LoginServiceDeps) {
  const { users, service, validator, accessTokens, secrets } = deps;
  const security = deps.logger?.child({ component: "auth" });

  function deny(
    event: string,
    details: Record<string, unknown>,
    description: string,
    nist: readonly string[] = ["ac-7", "ia-2", "au-3"],
  ): never {
    security?.warn({ event, nist, ...details }, "authentication denied");
    throw invalidGrant(description);
  }

  async function issueFor(session: ExistingSession, scope: string[], clientId: string | undefined) {
    return accessTokens.issue({
      userId: session.userId,
      username: session.username,
      sessionId: session.sessionId,
      scope,
      roles: session.roles,
      groups: session.groups,
      clientId,
      notAfter: session.expiresAt,
    });
  }

  return {
    /** Verifies a password and opens a session with a refresh token and an access token. */
    async passwordLogin(input: PasswordLoginInput, context: LoginContext): Promise<LoginResult> {
      const requested = parseScope(input.scope);
      const user = await users.verifyCredentials(input.username, input.password);
      if (!user) {
        deny(
          "login_failed",
          { username: input.username.slice(0, 128), ip: input.ip },
          "Invalid username or password",
        );
      }
      const granted = grantScope(user.roles, requested);
      const created = await service.create(
        {
          userId: user.id,
          username: user.username,
          kind: input.kind ?? "web",
          roles: user.roles,
          groups: user.groups,
          scope: granted,
          ttlSeconds: input.ttlSeconds,
          client: input.client,
          ipAddress: input.ip,
          userAgent: input.userAgent,
          metadata: {},
          withRefreshToken: true,
          principal: `user:${user.id}`,
        },
        { ...context, actor: { kind: "user", id: user.id } },
      );
      if (created.refreshToken === undefined) throw new Error("login created no refresh token");
      const access = await issueFor(created.session, granted, input.client);
      security?.info(
        { event: "login", nist: ["ia-2", "au-3"], userId: user.id, sessionId: created.session.sessionId },
        "login succeeded",
      );
      return {
        session: created.session,
        user,
        token: created.token,
        refreshToken: created.refreshToken,
        accessToken: access.token,
        expiresIn: access.expiresIn,
        scope: granted.join(" "),
      };
    },

    /**
     * Rotates a refresh token and issues a new access token. A superseded refresh token ends its session
     * (`refresh_token_reuse`); that, an unknown token and an ended session are all invalid_grant.
     */
    async refresh(
      refreshToken: string,
      context: LoginContext,
      options: { scope?: string | string[] | undefined; facts?: RequestFacts; client?: string } = {},
    ): Promise<RefreshResult> {
      const parsed = parseToken(refreshToken, "refresh");
      if (!parsed) deny("refresh_failed", { reason: "malformed" }, "Invalid refresh token");
      // The session must be valid right now (user-wide revocations and binding included) before the log is
      // even asked: a refresh token never revives what validation would refuse.
      const check = await validator.validateSession(parsed.sessionId, options.facts ?? {}, { touch: false });
      if (!check.valid) {
        deny(
          "refresh_failed",
          { sessionId: parsed.sessionId, reason: check.reason },
          check.reason === "not_found" ? "Invalid refresh token" : "The session is no longer active",
        );
      }
      const requested = parseScope(options.scope);
      const next = secrets.newSecret();
      let rotated: Awaited<ReturnType<SessionService["rotateRefreshToken"]>>;
      try {
        rotated = await service.rotateRefreshToken(
          parsed.sessionId,
          { presented: hashSecret(parsed.secret), next: hashSecret(next) },
          { ...context, actor: { kind: "user", id: check.entry.userId } },
        );
      } catch (error) {
        if (error instanceof DomainError && error.code !== "concurrency_conflict") {
          deny(
            "refresh_failed",
            { sessionId: parsed.sessionId, reason: error.code },
            "Invalid refresh token",
          );
        }
        throw error;
      }
      const session = rotated.state;
      if (session.status === "none") throw invalidGrant("Invalid refresh token");
      if (rotated.appended.some((event) => event.type === "SessionInvalidated")) {
        deny(
          "refresh_token_reuse",
          { sessionId: session.sessionId, userId: session.userId },
          "Refresh token was already used; the session has been ended",
          // A replayed refresh token is a compromised authenticator (IA-5), and ending its session is the
          // response to it.
          ["ac-7", "ia-2", "ia-5", "au-3"],
        );
      }
      if (session.status !== "active") {
        deny(
          "refresh_failed",
          { sessionId: session.sessionId, reason: session.status },
          "The session has ended",
        );
      }
      let scope = session.scope;
      if (requested !== undefined) {
        const outside = requested.filter((item) => !session.scope.includes(item));
        if (outside.length > 0) {
          throw new OAuthError("invalid_scope", `Scope exceeds the original grant: ${outside.join(" ")}`);
        }
        scope = requested;
      }
      const access = await issueFor(session, scope, options.client ?? session.client);
      // Rotating the refresh token is authenticator management (IA-5): the old one stops working now.
      security?.info(
        {
          event: "refresh_token_rotated",
          nist: ["ia-5", "au-3"],
          userId: session.userId,
          sessionId: session.sessionId,
        },
        "refresh token rotated",
      );
      return {
        session,
        refreshToken: formatToken("refresh", session.sessionId, next),
        accessToken: access.token,
        expiresIn: access.expiresIn,
        scope: scope.join(" "),
      };
    },

    /** Ends the caller's own session (reason `logout`). */
    async logout(principal: Principal, context: CommandContext): Promise<ExistingSession> {
      if (principal.kind !== "user") {
        throw new DomainError("invalid_request", "Log out with the session's own token, not the admin key");
      }
      const ended = await service.invalidate(principal.sessionId, "logout", context);
      security?.info(
        {
          event: "logout",
          nist: ["ac-12", "au-3"],
          userId: principal.userId,
          sessionId: principal.sessionId,
        },
        "logout",
      );
      return ended;
    },
  };
}

export type LoginService = ReturnType<typeof createLoginService>;

/** Requested scope as a list; unknown scope values are refused (RFC 6749 invalid_scope). */
export function parseScope(scope: string | string[] | undefined): Permission[] | undefined {
  if (scope === undefined) return undefined;
  const items = (Array.isArray(scope) ? scope : scope.split(" ")).map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) return undefined;
  const unknown = items.filter((item) => !(SCOPES as readonly string[]).includes(item));
  if (unknown.length > 0) throw new OAuthError("invalid_scope", `Unknown scope: ${unknown.join(" ")}`);
  return SCOPES.filter((known) => items.includes(known));
}

/** What the roles allow, narrowed to what was asked for. Asking only for more than allowed is refused. */
export function grantScope(roles: string[], requested: Permission[] | undefined): Permission[] {
  const allowed = permissionsFor(roles, undefined);
  const granted = SCOPES.filter(
    (item) => allowed.has(item) && (requested === undefined || requested.includes(item)),
  );
  if (granted.length === 0) {
    throw new OAuthError(
      "invalid_scope",
      requested === undefined
        ? "The user's roles grant no scope"
        : "None of the requested scopes is granted to this user",
    );
  }
  return granted;
}
