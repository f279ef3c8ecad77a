import { DomainError } from "../domain/errors.ts";
import type { RecordedEvent, SessionCreatedData } from "../domain/events.ts";
import type { CreateSession } from "../domain/session-commands.ts";

/**
 * Is a create that reused an Idempotency-Key the same request as the one that created the session?
 * (draft-ietf-httpapi-idempotency-key-header §2.6: a key reused with another payload is refused, 422.)
 *
 * Compared against the original SessionCreated, field by field, for what the request decides: owner and
 * claims, kind, scope (so a narrower token of the same user cannot collect a broader session by reusing
 * a key), client, metadata (key order aside), idle timeout, lifetime and whether a refresh token exists.
 * Not compared: the ids, instants and hashes each attempt makes anew, and the caller's address and user
 * agent (a retry may come over another network). The lifetime is compared as the original's policy would
 * have clamped the retry's, so a ttl above the maximum lifetime matches the same ttl again.
 *
 * By fields rather than by a digest stored in the event: events written before this rule compare the same
 * way, and SessionCreated keeps its shape for instances still running an older version.
 */
export function sameCreateRequest(original: SessionCreatedData, retry: CreateSession["data"]): boolean {
  const createdAt = Date.parse(original.createdAt);
  const lifetimeMs = Date.parse(original.expiresAt) - createdAt;
  const maxLifetimeMs = Date.parse(original.maxExpiresAt) - createdAt;
  return (
    original.userId === retry.userId &&
    original.username === retry.username &&
    original.kind === retry.kind &&
    original.client === retry.client &&
    original.idpSessionId === retry.idpSessionId &&
    original.idleTimeoutSeconds === retry.idleTimeoutSeconds &&
    (original.refreshTokenHash === undefined) === (retry.refreshTokenHash === undefined) &&
    lifetimeMs === Math.min(retry.ttlSeconds * 1000, maxLifetimeMs) &&
    sameList(original.roles, retry.roles) &&
    sameList(original.groups, retry.groups) &&
    sameList([...original.scope].sort(), [...retry.scope].sort()) &&
    sameJson(original.metadata, retry.metadata)
  );
}

/** The SessionCreated a duplicate append points at, when that is what it is. */
export function originalCreation(original: RecordedEvent | undefined): SessionCreatedData | undefined {
  return original?.type === "SessionCreated" ? original.data : undefined;
}

export const idempotencyKeyReused = () =>
  new DomainError(
    "idempotency_key_reused",
    "This Idempotency-Key was already used with a different request; use a new key for a new request",
  );

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

/** JSON equality where object key order does not count (a retry may serialise its body differently). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((value, index) => sameJson(value, b[index]));
  }
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = Object.keys(left);
  if (keys.length !== Object.keys(right).length) return false;
  return keys.every((key) => Object.hasOwn(right, key) && sameJson(left[key], right[key]));
}
