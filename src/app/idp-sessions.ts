import type { Clock, IdGenerator } from "../domain/ports.ts";
import { effectiveTouchIntervalMs } from "../domain/session-decider.ts";
import { sameClaims } from "../domain/user-decider.ts";
import { isRecycledByUser, type ValidationEntry } from "../projections/validation-entry.ts";
import { type Principal, permissionsFor, sessionPrincipal } from "./access.ts";
import type { CommandContext } from "./command-handler.ts";
import { type IdpIdentity, IdpTokenError, type IdpVerifier } from "./idp.ts";
import type { ReplayStore } from "./idp-ports.ts";
import { createKeyedMutex } from "./keyed-mutex.ts";
import type { SessionPolicy } from "./policy.ts";
import type { ValidationReplica, ValidationStore } from "./ports.ts";
import type { SessionService } from "./session-service.ts";
import { touchOnUse } from "./touch-on-use.ts";
import type { UserService } from "./user-service.ts";

/**
 * Sessions behind IdP access tokens, and automatic recycling when an IdP token's roles or groups differ
 * from a session's.
 *
 * The first time a sign-in (issuer, subject, IdP `sid`) presents a token, a Tessera session is created
 * with the token's roles, groups and sid, and bound to the sign-in in the replay store (shared by every
 * instance, so all of them map the sign-in to the same session). Later tokens of that sign-in resolve to
 * the session with a memory lookup. When a token's claims differ from the session's, the IdP is telling
 * us the user changed: UserClaimsChanged is recorded (source `jwt`), the session is recycled at once, the
 * recycle process manager recycles the user's other stale sessions, and the caller is refused with reason
 * `recycled`. The next request with the new token gets a fresh session with the new claims.
 *
 * A token issued before the last recorded change that carries other claims is stale (the client has not
 * refreshed it yet): it is refused as `recycled` without recording anything, so an old and a new token
 * in flight at the same time cannot flip the user's claims back and forth.
 */

export type IdpRefusalReason = "malformed" | "expired" | "invalidated" | "recycled" | "binding_mismatch";

export type IdpAuthOutcome =
  | { kind: "not_idp" }
  | { kind: "authenticated"; principal: Principal; entry: ValidationEntry; identity: IdpIdentity }
  | { kind: "refused"; reason: IdpRefusalReason };

export type ClaimsVerdict =
  | { ok: true; identity: IdpIdentity }
  | { ok: false; reason: Exclude<IdpRefusalReason, "invalidated"> };

export type RequestFacts = { ip?: string | undefined; userAgent?: string | undefined };

export type IdpSessionsDeps = {
  /** Undefined when no IdP is configured: IdP tokens are then never recognised. */
  verifier: IdpVerifier | undefined;
  service: SessionService;
  users: UserService;
  replica: ValidationReplica;
  store: ValidationStore;
  bindings: ReplayStore;
  clock: Clock;
  ids: IdGenerator;
  policy: SessionPolicy;
  /** Told about failures of fire-and-forget work (touches). */
  onError?: ((error: unknown, context: Record<string, unknown>) => void) | undefined;
};

type Judgement =
  | { kind: "authenticated"; entry: ValidationEntry }
  | { kind: "refused"; reason: IdpRefusalReason }
  | { kind: "replace" };

const BINDING_ATTEMPTS = 3;
const STALE_MARGIN_MS = 1_000;

export function createIdpSessions(deps: IdpSessionsDeps) {
  const { verifier, service, users, replica, clock, ids, policy } = deps;
  /** Sign-in → session, as this instance last resolved it (a hint: every hit is re-judged). */
  const boundLocally = new Map<string, string>();
  const remember = (key: string, sessionId: string) => {
    if (boundLocally.size >= 100_000) boundLocally.clear();
    boundLocally.set(key, sessionId);
  };
  const touchRequestedAt = new Map<string, number>();
  const signIns = createKeyedMutex();

  const contextFor = (identity: IdpIdentity, facts: RequestFacts): CommandContext => ({
    commandId: ids.uuidv7(),
    actor: { kind: "idp", id: identity.issuer },
    source: "jwt",
    ip: facts.ip,
    userAgent: facts.userAgent,
  });

  async function verify(token: string): Promise<IdpIdentity | { reason: "malformed" | "expired" }> {
    if (!verifier) return { reason: "malformed" };
    try {
      return await verifier.verifyAccessToken(token);
    } catch (error) {
      if (error instanceof IdpTokenError)
        return { reason: error.problem === "expired" ? "expired" : "malformed" };
      throw error;
    }
  }

  async function lookup(sessionId: string): Promise<ValidationEntry | undefined> {
    const known = replica.getSession(sessionId);
    if (known) return known;
    const entry = (await deps.store.getSession(sessionId)) ?? (await service.fold(sessionId));
    if (entry) replica.offerSession(entry);
    return entry;
  }

  /** Is the session live now? If not: why, and (when cheap to know) since when. */
  function standing(entry: ValidationEntry, now: number) {
    if (entry.status !== "active") return { live: false as const, reason: entry.status, endedAt: undefined };
    if (now >= entry.expiresAt)
      return { live: false as const, reason: "expired" as const, endedAt: entry.expiresAt };
    if (entry.idleTimeoutSeconds > 0) {
      const idleAt = entry.lastActivityAt + entry.idleTimeoutSeconds * 1000;
      if (now >= idleAt) return { live: false as const, reason: "expired" as const, endedAt: idleAt };
    }
    const user = replica.getUser(entry.userId);
    for (const revocation of user?.revocations ?? []) {
      if (entry.createdAt <= revocation.before && revocation.except !== entry.sessionId) {
        return { live: false as const, reason: "invalidated" as const, endedAt: revocation.before };
      }
    }
    if (isRecycledByUser(user, entry)) {
      return { live: false as const, reason: "recycled" as const, endedAt: user?.claimsChangedAt };
    }
    return { live: true as const };
  }

  async function endedAtOf(entry: ValidationEntry): Promise<number> {
    const state = await service.getAtLeast(entry.sessionId, entry.position);
    return state && state.status !== "active" ? state.endedAt : clock.now();
  }

  /** Token older than the user's last recorded claims change, and disagreeing with it. */
  async function isStale(identity: IdpIdentity): Promise<boolean> {
    const last = await users.lastClaimsChange(identity.subject);
    return (
      last !== undefined &&
      !sameClaims(last.claims, identity.claims) &&
      identity.issuedAt + STALE_MARGIN_MS <= last.changedAt
    );
  }

  /** The session's claims differ from a verified token's: record the change and recycle the session. */
  async function recycleForClaims(
    entry: ValidationEntry,
    identity: IdpIdentity,
    facts: RequestFacts,
  ): Promise<"recycled"> {
    if (await isStale(identity)) return "recycled";
    // Each command gets its own id (contextFor mints one): two commands sharing one would be taken by
    // the log for a retry of the first.
    const change = await users.changeClaims(identity.subject, identity.claims, contextFor(identity, facts));
    await users.recycleSession(entry.sessionId, change.event, contextFor(identity, facts));
    return "recycled";
  }

  async function judge(
    entry: ValidationEntry,
    identity: IdpIdentity,
    facts: RequestFacts,
  ): Promise<Judgement> {
    const now = clock.now();
    const standingNow = standing(entry, now);
    if (standingNow.live) {
      if (sameClaims(entry, identity.claims)) return { kind: "authenticated", entry };
      return { kind: "refused", reason: await recycleForClaims(entry, identity, facts) };
    }
    // Recycled for other claims than this token carries: this is the new token the client was told to get.
    if (standingNow.reason === "recycled" && !sameClaims(entry, identity.claims)) return { kind: "replace" };
    // A token issued after the session ended means the IdP signed the user in again.
    const endedAt = standingNow.endedAt ?? (await endedAtOf(entry));
    if (identity.issuedAt > endedAt) return { kind: "replace" };
    return { kind: "refused", reason: standingNow.reason };
  }

  async function createSessionFor(identity: IdpIdentity, facts: RequestFacts) {
    // The IdP's claims are the user's claims: the first sign-in records them, a later one with other
    // claims is a change (and recycles the user's other sessions through the process manager).
    await users.changeClaims(identity.subject, identity.claims, contextFor(identity, facts));
    const created = await service.create(
      {
        userId: identity.subject,
        username: identity.username,
        kind: "api",
        roles: identity.claims.roles,
        groups: identity.claims.groups,
        scope: [],
        client: "idp",
        ipAddress: facts.ip,
        userAgent: facts.userAgent,
        metadata: { idp_issuer: identity.issuer },
        idpSessionId: identity.idpSessionId,
        principal: `idp:${identity.subject}`,
      },
      { ...contextFor(identity, facts), actor: { kind: "user", id: identity.subject } },
    );
    return lookup(created.session.sessionId);
  }

  /** Resolves a verified token to its live session, creating or replacing the bound one as needed. */
  async function sessionFor(identity: IdpIdentity, facts: RequestFacts): Promise<Judgement> {
    const key = bindingKey(identity);
    const expiresAt = () => clock.now() + policy.maxLifetimeSeconds * 1000;
    const fast = boundLocally.get(key);
    if (fast !== undefined) {
      const entry = replica.getSession(fast);
      if (entry && standing(entry, clock.now()).live && sameClaims(entry, identity.claims)) {
        return { kind: "authenticated", entry };
      }
    }
    // The slow path creates sessions: one request per sign-in at a time on this instance, so a burst of
    // parallel first requests creates one session, not one each.
    return signIns.run(key, async () => {
      for (let attempt = 0; attempt < BINDING_ATTEMPTS; attempt++) {
        const bound = await deps.bindings.get(key);
        if (bound !== undefined) {
          const entry = await lookup(bound);
          if (entry) {
            const verdict = await judge(entry, identity, facts);
            if (verdict.kind !== "replace") {
              if (verdict.kind === "authenticated") remember(key, bound);
              return verdict;
            }
          }
          if (await isStale(identity)) return { kind: "refused", reason: "recycled" };
          const created = await createSessionFor(identity, facts);
          if (!created) continue;
          if (await deps.bindings.replace(key, bound, created.sessionId, expiresAt())) {
            remember(key, created.sessionId);
            return { kind: "authenticated", entry: created };
          }
          await discard(created, identity, facts);
        } else {
          if (await isStale(identity)) return { kind: "refused", reason: "recycled" };
          const created = await createSessionFor(identity, facts);
          if (!created) continue;
          const claim = await deps.bindings.claim(key, created.sessionId, expiresAt());
          if (claim.won) {
            remember(key, created.sessionId);
            return { kind: "authenticated", entry: created };
          }
          await discard(created, identity, facts);
        }
        boundLocally.delete(key);
      }
      throw new Error("IdP sign-in: the session binding kept changing under us");
    });
  }

  /** Another instance bound the sign-in first: the session we made is not used by anyone. */
  async function discard(entry: ValidationEntry, identity: IdpIdentity, facts: RequestFacts) {
    await service.invalidate(entry.sessionId, "revoked", contextFor(identity, facts));
  }

  function maybeTouch(entry: ValidationEntry, facts: RequestFacts) {
    const now = clock.now();
    const interval = effectiveTouchIntervalMs(policy.touchIntervalSeconds, entry.idleTimeoutSeconds);
    if (now - entry.lastActivityAt < interval) return;
    const requested = touchRequestedAt.get(entry.sessionId);
    if (requested !== undefined && now - requested < interval) return;
    if (touchRequestedAt.size > 100_000) touchRequestedAt.clear();
    touchRequestedAt.set(entry.sessionId, now);
    touchOnUse({ service, ids }, entry, facts, now, "jwt", (error) =>
      deps.onError?.(error, { sessionId: entry.sessionId, during: "touch" }),
    );
  }

  return {
    enabled: verifier !== undefined,

    /**
     * A Bearer token: `not_idp` unless it claims to come from the configured IdP; otherwise verified and
     * resolved to its session (created on first use), refused with a reason, or recycled (reason
     * `recycled`) when its claims differ from the session's.
     */
    async authenticate(token: string, facts: RequestFacts = {}): Promise<IdpAuthOutcome> {
      if (!verifier?.isIdpToken(token)) return { kind: "not_idp" };
      const identity = await verify(token);
      if ("reason" in identity) return { kind: "refused", reason: identity.reason };
      const verdict = await sessionFor(identity, facts);
      if (verdict.kind !== "authenticated") {
        return verdict.kind === "refused" ? verdict : { kind: "refused", reason: "invalidated" };
      }
      const entry = verdict.entry;
      maybeTouch(entry, facts);
      return { kind: "authenticated", principal: principalOf(entry, identity), entry, identity };
    },

    /**
     * For a session already validated by its own token (POST /v1/sessions/validate with `jwt`, and /mcp):
     * does the caller's IdP token still agree with it? A different subject is `binding_mismatch`; other
     * roles or groups record the change, recycle the session and answer `recycled`.
     */
    async checkSessionClaims(
      entry: ValidationEntry,
      jwt: string,
      facts: RequestFacts = {},
    ): Promise<ClaimsVerdict> {
      const identity = await verify(jwt);
      if ("reason" in identity) return { ok: false, reason: identity.reason };
      if (identity.subject !== entry.userId) return { ok: false, reason: "binding_mismatch" };
      if (sameClaims(entry, identity.claims)) return { ok: true, identity };
      return { ok: false, reason: await recycleForClaims(entry, identity, facts) };
    },
  };
}

export type IdpSessions = ReturnType<typeof createIdpSessions>;

function bindingKey(identity: IdpIdentity): string {
  // Without a sid the IdP gives no way to tell sign-ins apart: one session per subject.
  return `idp-session\u0000${identity.issuer}\u0000${identity.subject}\u0000${identity.idpSessionId ?? ""}`;
}

export function principalOf(entry: ValidationEntry, identity: IdpIdentity): Principal {
  // IdP scopes (openid, profile…) say nothing about Tessera's permissions; roles alone decide.
  const principal = sessionPrincipal(entry, "jwt", permissionsFor(entry.roles, undefined));
  // Sessions this caller opens (POST /v1/sessions) belong to the same IdP sign-in, so a back-channel
  // logout naming its sid must find them too.
  principal.idpSessionId = identity.idpSessionId;
  return principal;
}
