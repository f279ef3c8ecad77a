import type {
  Claims,
  EndReason,
  RecordedEvent,
  SessionBinding,
  SessionEvent,
  SessionKind,
  UserEvent,
} from "../domain/events.ts";
import type { ExistingSession, SessionStatus } from "../domain/session-state.ts";
import { sameClaims } from "../domain/user-decider.ts";

/**
 * What validation needs to know about one session, and nothing more: it lives in a NATS KV bucket and in
 * every instance's memory, so it stays small. Instants are epoch milliseconds. `position` is the log
 * position of the last event folded in; an older entry never overwrites a newer one.
 */
export type ValidationEntry = {
  sessionId: string;
  userId: string;
  username: string;
  kind: SessionKind;
  status: SessionStatus;
  endReason: EndReason | undefined;
  tokenHash: string;
  refreshGeneration: number;
  roles: string[];
  groups: string[];
  scope: string[];
  createdAt: number;
  expiresAt: number;
  idleTimeoutSeconds: number;
  lastActivityAt: number;
  binding: SessionBinding;
  idpSessionId: string | undefined;
  position: number;
};

/** Per-user facts that apply to all of a user's sessions at once (O(1) revoke-all, current claims). */
export type UserValidationEntry = {
  userId: string;
  /**
   * Revoke-all instants: a session created at or before `before` is revoked unless it is `except`. Kept
   * in an exact normal form of at most two entries (see addRevocation), so it never needs a cap.
   */
  revocations: Revocation[];
  claims: Claims | undefined;
  /** When `claims` were recorded (the last UserClaimsChanged): sessions created before it must hold them. */
  claimsChangedAt?: number | undefined;
  position: number;
};

export type Revocation = { before: number; except?: string | undefined };

export function isRevokedByUser(user: UserValidationEntry | undefined, sessionId: string, createdAt: number) {
  if (!user) return false;
  for (const revocation of user.revocations) {
    if (createdAt <= revocation.before && revocation.except !== sessionId) return true;
  }
  return false;
}

/**
 * O(1) recycling: a session created at or before the user's last claims change that holds other roles or
 * groups is refused at once on every instance, before the recycle process manager's SessionRecycled for
 * it is written (the same rule the process manager applies).
 */
export function isRecycledByUser(
  user: UserValidationEntry | undefined,
  session: { createdAt: number; roles: string[]; groups: string[] },
) {
  if (user?.claims === undefined || user.claimsChangedAt === undefined) return false;
  if (session.createdAt > user.claimsChangedAt) return false;
  // Recorded claims are normalised (sorted, unique); most sessions hold them in that form already, so the
  // validation path usually compares in place and allocates nothing.
  if (sameInOrder(session.roles, user.claims.roles) && sameInOrder(session.groups, user.claims.groups))
    return false;
  return !sameClaims(session, user.claims);
}

function sameInOrder(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function evolveValidationEntry(
  entry: ValidationEntry | undefined,
  event: RecordedEvent<SessionEvent>,
): ValidationEntry | undefined {
  if (entry && event.position <= entry.position) return entry;
  if (event.type === "SessionCreated") {
    const d = event.data;
    return {
      sessionId: d.sessionId,
      userId: d.userId,
      username: d.username,
      kind: d.kind,
      status: "active",
      endReason: undefined,
      tokenHash: d.tokenHash,
      refreshGeneration: 0,
      roles: d.roles,
      groups: d.groups,
      scope: d.scope,
      createdAt: Date.parse(d.createdAt),
      expiresAt: Date.parse(d.expiresAt),
      idleTimeoutSeconds: d.idleTimeoutSeconds,
      lastActivityAt: Date.parse(d.createdAt),
      binding: d.binding,
      idpSessionId: d.idpSessionId,
      position: event.position,
    };
  }
  if (!entry) return undefined;
  const next = { ...entry, position: event.position };
  if (entry.status !== "active") return next;
  switch (event.type) {
    case "SessionRenewed":
      return {
        ...next,
        expiresAt: Date.parse(event.data.expiresAt),
        lastActivityAt: Math.max(entry.lastActivityAt, Date.parse(event.data.renewedAt)),
      };
    case "SessionTouched":
      return { ...next, lastActivityAt: Math.max(entry.lastActivityAt, Date.parse(event.data.at)) };
    case "SessionTokensRotated":
      return {
        ...next,
        refreshGeneration: event.data.refreshGeneration,
        lastActivityAt: Math.max(entry.lastActivityAt, Date.parse(event.data.rotatedAt)),
      };
    case "SessionRecycled":
      return { ...next, status: "recycled", endReason: event.data.reason };
    case "SessionInvalidated":
      return { ...next, status: "invalidated", endReason: event.data.reason };
    case "SessionExpired":
      return {
        ...next,
        status: "expired",
        endReason: event.data.cause === "idle" ? "expired_idle" : "expired_absolute",
      };
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

export function evolveUserValidationEntry(
  entry: UserValidationEntry | undefined,
  event: RecordedEvent<UserEvent>,
): UserValidationEntry {
  const base: UserValidationEntry = entry ?? {
    userId: event.data.userId,
    revocations: [],
    claims: undefined,
    position: 0,
  };
  if (event.position <= base.position) return base;
  switch (event.type) {
    case "UserClaimsChanged":
      return {
        ...base,
        claims: event.data.after,
        claimsChangedAt: Date.parse(event.data.changedAt),
        position: event.position,
      };
    case "UserSessionsRevoked": {
      const revocation = { before: Date.parse(event.data.revokedBefore), except: event.data.exceptSessionId };
      return { ...base, revocations: addRevocation(base.revocations, revocation), position: event.position };
    }
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

/**
 * Adds a revocation without losing or inventing any: a session stays revoked exactly when some revocation
 * ever recorded covers it, whatever order the instants arrive in (instances' clocks differ). Normal form:
 * keep the excepted revocation with the latest instant (`top`); every other one is either subsumed by it
 * (same exception, earlier instant) or, together with it, revokes everybody up to its own instant (two
 * different exceptions cannot both spare the same session), so it folds into one full revocation.
 */
function addRevocation(revocations: Revocation[], added: Revocation): Revocation[] {
  const all = [...revocations, added];
  let top: Revocation | undefined;
  for (const r of all) {
    if (r.except !== undefined && (top === undefined || r.before > top.before)) top = r;
  }
  let full = Number.NEGATIVE_INFINITY;
  for (const r of all) {
    if (r.except === undefined || r.except !== top?.except) full = Math.max(full, r.before);
  }
  const normal: Revocation[] = [];
  if (full !== Number.NEGATIVE_INFINITY) normal.push({ before: full });
  if (top !== undefined && top.before > full) normal.push({ before: top.before, except: top.except });
  return normal;
}

/** The entry for a session folded from its own stream (the last-resort fallback of validation). */
export function validationEntryFromState(state: ExistingSession, position: number): ValidationEntry {
  return {
    sessionId: state.sessionId,
    userId: state.userId,
    username: state.username,
    kind: state.kind,
    status: state.status,
    endReason: state.status === "active" ? undefined : state.endReason,
    tokenHash: state.tokenHash,
    refreshGeneration: state.refreshGeneration,
    roles: state.roles,
    groups: state.groups,
    scope: state.scope,
    createdAt: state.createdAt,
    expiresAt: state.expiresAt,
    idleTimeoutSeconds: state.idleTimeoutSeconds,
    lastActivityAt: state.lastActivityAt,
    binding: state.binding,
    idpSessionId: state.idpSessionId,
    position,
  };
}
