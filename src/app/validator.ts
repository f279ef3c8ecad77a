import { hash } from "node:crypto";
import type { BindingMode } from "../domain/events.ts";
import type { Clock } from "../domain/ports.ts";
import { effectiveTouchIntervalMs } from "../domain/session-decider.ts";
import {
  hashesEqual,
  isUuid,
  parseToken,
  tokenSecretUnchecked,
  tokenSessionIdUnchecked,
} from "../domain/tokens.ts";
import { isRecycledByUser, isRevokedByUser, type ValidationEntry } from "../projections/validation-entry.ts";
import type { ValidationReplica, ValidationStore } from "./ports.ts";

export type InvalidReason =
  | "malformed"
  | "not_found"
  | "expired"
  | "invalidated"
  | "recycled"
  | "binding_mismatch";

export type ValidationOutcome =
  | { valid: true; entry: ValidationEntry }
  | { valid: false; reason: InvalidReason; entry?: ValidationEntry | undefined };

export type RequestFacts = { ip?: string | undefined; userAgent?: string | undefined };

export type ValidatorDeps = {
  replica: ValidationReplica;
  store: ValidationStore;
  /** Last resort on a miss: fold the session's own stream (fresh even before any projection ran). */
  foldSession: (sessionId: string) => Promise<ValidationEntry | undefined>;
  clock: Clock;
  touchIntervalSeconds: number;
  maxLifetimeSeconds: number;
  /** Called (at most once per touch interval per session on this instance) when a touch is due. */
  /** `usedAt`: the moment this validation answered, which the touch records as the last activity. */
  onTouchDue?: (entry: ValidationEntry, facts: RequestFacts, usedAt: number) => void;
  /** Told the outcome of every validation through `validate` (for metrics). */
  onOutcome?: (outcome: "valid" | InvalidReason) => void;
};

const CLOCK_SKEW_MS = 5 * 60_000;
const NO_FACTS: RequestFacts = Object.freeze({});
const MALFORMED: ValidationOutcome = Object.freeze({ valid: false, reason: "malformed" });
const NOT_FOUND: ValidationOutcome = Object.freeze({ valid: false, reason: "not_found" });

/**
 * Is this bearer token valid now? A memory lookup in the common case. Deadlines are checked here, not
 * left to the scheduler, so an overdue session never validates even before its SessionExpired exists.
 */
export function createValidator(deps: ValidatorDeps) {
  const { replica, clock } = deps;
  const touchRequestedAt = new Map<string, number>();
  const maxAgeMs = deps.maxLifetimeSeconds * 1000 + CLOCK_SKEW_MS;

  function judge(
    entry: ValidationEntry,
    secretHash: string,
    facts: RequestFacts,
    now: number,
  ): ValidationOutcome {
    if (!hashesEqual(entry.tokenHash, secretHash)) return NOT_FOUND;
    return judgeEntry(entry, facts, now);
  }

  /**
   * The memory-only answer; undefined means the token is well-formed but the replica does not know its
   * session. The common case (a known session, the right secret) costs one lookup and one sha256: a
   * stored session's id and a secret hashing to its stored hash prove the token well-formed, so the full
   * pattern is only checked on the paths that refuse or miss.
   */
  function fromMemory(token: string, facts: RequestFacts): ValidationOutcome | undefined {
    const sessionId = tokenSessionIdUnchecked(token, "session");
    if (sessionId === undefined) return MALFORMED;
    const entry = replica.getSession(sessionId);
    if (entry !== undefined) {
      const secretHash = hash("sha256", tokenSecretUnchecked(token), "base64url");
      if (hashesEqual(entry.tokenHash, secretHash)) return judgeEntry(entry, facts, clock.now());
    }
    if (!parseToken(token, "session")) return MALFORMED;
    return entry === undefined ? undefined : NOT_FOUND;
  }

  /** Everything but the secret: status, deadlines, user-wide revocation, binding (when facts are given). */
  function judgeEntry(
    entry: ValidationEntry,
    facts: RequestFacts | undefined,
    now: number,
    touch = true,
  ): ValidationOutcome {
    switch (entry.status) {
      case "active":
        break;
      case "expired":
      case "invalidated":
      case "recycled":
        return { valid: false, reason: entry.status, entry };
      default: {
        const unreachable: never = entry.status;
        return unreachable;
      }
    }
    if (now >= entry.expiresAt) return { valid: false, reason: "expired", entry };
    if (entry.idleTimeoutSeconds > 0 && now >= entry.lastActivityAt + entry.idleTimeoutSeconds * 1000) {
      return { valid: false, reason: "expired", entry };
    }
    const user = replica.getUser(entry.userId);
    if (isRevokedByUser(user, entry.sessionId, entry.createdAt)) {
      return { valid: false, reason: "invalidated", entry };
    }
    if (isRecycledByUser(user, entry)) return { valid: false, reason: "recycled", entry };
    if (facts === undefined) return { valid: true, entry };
    if (!bindingHolds(entry.binding.mode, entry.binding, facts)) {
      return { valid: false, reason: "binding_mismatch", entry };
    }
    if (touch) maybeTouch(entry, facts, now);
    return { valid: true, entry };
  }

  function maybeTouch(entry: ValidationEntry, facts: RequestFacts, now: number) {
    if (!deps.onTouchDue) return;
    const interval = effectiveTouchIntervalMs(deps.touchIntervalSeconds, entry.idleTimeoutSeconds);
    if (now - entry.lastActivityAt < interval) return;
    const requested = touchRequestedAt.get(entry.sessionId);
    if (requested !== undefined && now - requested < interval) return;
    if (touchRequestedAt.size > 100_000) pruneTouchRequests(now, interval);
    touchRequestedAt.set(entry.sessionId, now);
    deps.onTouchDue(entry, facts, now);
  }

  function pruneTouchRequests(now: number, interval: number) {
    for (const [id, at] of touchRequestedAt) if (now - at >= interval) touchRequestedAt.delete(id);
  }

  /** A UUIDv7 carries its creation time; ids from the future or older than any session can live are guesses. */
  function plausibleId(sessionId: string, now: number): boolean {
    const createdAt = Number.parseInt(sessionId.slice(0, 8) + sessionId.slice(9, 13), 16);
    return (
      sessionId.charCodeAt(14) === 55 /* '7' */ &&
      createdAt <= now + CLOCK_SKEW_MS &&
      now - createdAt <= maxAgeMs
    );
  }

  return {
    /**
     * Is the session itself valid now, for a credential that names it instead of carrying its secret (a
     * JWT's `sid`)? The same rules and lookups as `validate`; binding is checked and a touch requested only
     * when the request's facts are given (`touch: false` when the caller records activity itself).
     */
    async validateSession(
      sessionId: string,
      facts?: RequestFacts,
      options: { touch?: boolean } = {},
    ): Promise<ValidationOutcome> {
      if (!isUuid(sessionId)) return { valid: false, reason: "malformed" };
      const now = clock.now();
      const entry = await lookUp(sessionId, now);
      return entry ? judgeEntry(entry, facts, now, options.touch ?? true) : NOT_FOUND;
    },

    /** The memory-only path: undefined means the replica does not know the session yet. Not counted in metrics. */
    validateFromMemory(token: string, facts: RequestFacts = NO_FACTS): ValidationOutcome | undefined {
      return fromMemory(token, facts);
    },

    /**
     * `validate` without its fall-backs, for callers that can answer synchronously: the outcome (counted
     * like `validate`'s) when memory decides it, undefined when only `validate` can (the replica does not
     * know the session yet).
     */
    validateCached(token: string, facts: RequestFacts = NO_FACTS): ValidationOutcome | undefined {
      const outcome = fromMemory(token, facts);
      if (outcome !== undefined) deps.onOutcome?.(outcome.valid ? "valid" : outcome.reason);
      return outcome;
    },

    async validate(token: string, facts: RequestFacts = NO_FACTS): Promise<ValidationOutcome> {
      const outcome = fromMemory(token, facts) ?? (await validateFromStore(token, facts));
      deps.onOutcome?.(outcome.valid ? "valid" : outcome.reason);
      return outcome;
    },
  };

  /** A well-formed token whose session is not in memory (yet): the shared store, else the session's stream. */
  async function validateFromStore(token: string, facts: RequestFacts): Promise<ValidationOutcome> {
    const parsed = parseToken(token, "session");
    if (!parsed) return MALFORMED;
    const now = clock.now();
    const secretHash = hash("sha256", parsed.secret, "base64url");
    const entry = await lookUp(parsed.sessionId, now);
    return entry ? judge(entry, secretHash, facts, now) : NOT_FOUND;
  }

  /** This instance's memory, else the shared store, else the session's own stream (offered to memory). */
  async function lookUp(sessionId: string, now: number): Promise<ValidationEntry | undefined> {
    const cached = replica.getSession(sessionId);
    if (cached) return cached;
    if (!plausibleId(sessionId, now)) return undefined;
    const entry = (await deps.store.getSession(sessionId)) ?? (await deps.foldSession(sessionId));
    if (entry) replica.offerSession(entry);
    return entry;
  }
}

export type Validator = ReturnType<typeof createValidator>;

function bindingHolds(
  mode: BindingMode,
  bound: { ip?: string | undefined; userAgent?: string | undefined },
  facts: RequestFacts,
): boolean {
  switch (mode) {
    case "off":
      return true;
    case "ip":
      return bound.ip === facts.ip;
    case "ua":
      return bound.userAgent === facts.userAgent;
    case "ip+ua":
      return bound.ip === facts.ip && bound.userAgent === facts.userAgent;
    default: {
      const unreachable: never = mode;
      return unreachable;
    }
  }
}
