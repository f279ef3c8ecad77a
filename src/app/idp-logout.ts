import { createHash } from "node:crypto";
import type { Clock, EventLog } from "../domain/ports.ts";
import { waitForCheckpoint } from "../projections/runner.ts";
import type { CommandContext } from "./command-handler.ts";
import { IdpTokenError, type IdpVerifier } from "./idp.ts";
import type { IdpSessionIndex, ReplayStore } from "./idp-ports.ts";
import type { SessionService } from "./session-service.ts";

/**
 * OIDC Back-Channel Logout 1.0 receiver. The logout token is validated as §2.6 requires (see
 * IdpVerifier.verifyLogoutToken), its `jti` may be used once, and then the sessions it names end with
 * reason `backchannel_logout`: those created under the IdP session `sid` (of subject `sub` when both are
 * given), or, with only `sub`, every session of that user (the O(1) revoke-all, then the fan-out).
 */

export type LogoutOutcome = { ok: true; ended: number } | { ok: false; description: string };

export type BackchannelLogoutDeps = {
  verifier: IdpVerifier | undefined;
  replay: ReplayStore;
  service: SessionService;
  index: IdpSessionIndex;
  log: EventLog;
  clock: Clock;
  /** How long to wait for the IdP session index to catch up with the log (default 5 s). */
  indexTimeoutMs?: number | undefined;
};

/** jti are remembered a little past the token's own expiry (plus the verifier's clock tolerance). */
const JTI_MEMORY_SLACK_MS = 2 * 60_000;

export function createBackchannelLogout(deps: BackchannelLogoutDeps) {
  const indexTimeoutMs = deps.indexTimeoutMs ?? 5_000;

  async function sessionsOfIdpSession(idpSessionId: string, subject: string | undefined) {
    // A session created just before the logout may not be indexed yet; ending fewer than asked is the
    // one thing a logout must not do.
    const position = await deps.log.lastPosition();
    if (!(await waitForCheckpoint(deps.index, position, indexTimeoutMs))) {
      throw new Error(`IdP session index has not reached position ${position}`);
    }
    const rows = await deps.index.sessionIdsForIdpSession(idpSessionId);
    return rows.filter((row) => subject === undefined || row.userId === subject).map((row) => row.sessionId);
  }

  return {
    enabled: deps.verifier !== undefined,

    async handle(
      logoutToken: string | undefined,
      request: { ip?: string | undefined; userAgent?: string | undefined },
    ): Promise<LogoutOutcome> {
      if (!deps.verifier) return { ok: false, description: "No IdP is configured" };
      if (!logoutToken) return { ok: false, description: "logout_token is required" };
      let claims: Awaited<ReturnType<IdpVerifier["verifyLogoutToken"]>>;
      try {
        claims = await deps.verifier.verifyLogoutToken(logoutToken);
      } catch (error) {
        if (error instanceof IdpTokenError) return { ok: false, description: error.message };
        throw error;
      }
      const now = deps.clock.now();
      const replayKey = `logout-jti\u0000${claims.issuer}\u0000${claims.jti}`;
      const claim = await deps.replay.claim(
        replayKey,
        String(now),
        Math.max(claims.expiresAt, now) + JTI_MEMORY_SLACK_MS,
      );
      if (!claim.won) return { ok: false, description: "logout_token was already used (jti replay)" };
      const context: CommandContext = {
        commandId: `bcl:${createHash("sha256").update(`${claims.issuer}\u0000${claims.jti}`).digest("base64url")}`,
        actor: { kind: "idp", id: claims.issuer },
        source: "webhook",
        ip: request.ip,
        userAgent: request.userAgent,
      };
      try {
        if (claims.idpSessionId === undefined) {
          const subject = claims.subject as string;
          const ended = await deps.service.revokeAll(subject, "backchannel_logout", undefined, context);
          return { ok: true, ended };
        }
        let ended = 0;
        for (const sessionId of await sessionsOfIdpSession(claims.idpSessionId, claims.subject)) {
          const before = await deps.service.get(sessionId);
          if (before?.status !== "active") continue;
          const after = await deps.service.invalidate(sessionId, "backchannel_logout", {
            ...context,
            commandId: `${context.commandId}:${sessionId}`,
          });
          if (after.status === "invalidated" && after.endReason === "backchannel_logout") ended++;
        }
        return { ok: true, ended };
      } catch (error) {
        // Our failure, not the IdP's: let its retry of the same token through.
        await deps.replay.release(replayKey).catch(() => {});
        throw error;
      }
    },
  };
}

export type BackchannelLogout = ReturnType<typeof createBackchannelLogout>;
