import { hash } from "node:crypto";

/**
 * Bearer secrets. A session token is `tss_<sessionId>_<secret>`, a refresh token `tsr_<sessionId>_<secret>`;
 * the secret is 32 random bytes in base64url. Only sha256(secret) is ever stored. Parsing is strict so a
 * malformed token is refused before any lookup.
 */

export type TokenKind = "session" | "refresh";
export type ParsedToken = { kind: TokenKind; sessionId: string; secret: string };

const PREFIX_BY_KIND: Record<TokenKind, string> = { session: "tss_", refresh: "tsr_" };
const UUID_LENGTH = 36;
const SECRET_LENGTH = 43; // base64url of 32 bytes, unpadded
const TOKEN_LENGTH = 4 + UUID_LENGTH + 1 + SECRET_LENGTH;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TOKEN_PATTERN_BY_KIND: Record<TokenKind, RegExp> = {
  session: /^tss_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/,
  refresh: /^tsr_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/,
};

export function formatToken(kind: TokenKind, sessionId: string, secret: string): string {
  return `${PREFIX_BY_KIND[kind]}${sessionId}_${secret}`;
}

export function parseToken(token: string, expected: TokenKind): ParsedToken | undefined {
  // One anchored pattern over the whole token (this runs on every validation): cheaper than slicing
  // first and testing the parts with two patterns.
  if (token.length !== TOKEN_LENGTH || !TOKEN_PATTERN_BY_KIND[expected].test(token)) return undefined;
  return { kind: expected, sessionId: token.slice(4, 4 + UUID_LENGTH), secret: token.slice(5 + UUID_LENGTH) };
}

/**
 * Where a token of `kind` would keep its session id and secret, judged by length, prefix and separator
 * only — the characters are NOT checked. For the validation hot path: a lookup by that id that finds a
 * session whose stored hash matches the secret's proves the token well-formed (stored ids and secrets
 * are), so the full pattern (parseToken) is only needed when that fails, to tell `malformed` from
 * `not_found`. Undefined when the token cannot be one of `kind` at all.
 */
export function tokenSessionIdUnchecked(token: string, expected: TokenKind): string | undefined {
  if (token.length !== TOKEN_LENGTH || token.charCodeAt(4 + UUID_LENGTH) !== 95 /* _ */) return undefined;
  if (!token.startsWith(PREFIX_BY_KIND[expected])) return undefined;
  return token.slice(4, 4 + UUID_LENGTH);
}

/** The secret part of a token whose shape tokenSessionIdUnchecked accepted (characters unchecked). */
export function tokenSecretUnchecked(token: string): string {
  return token.slice(5 + UUID_LENGTH);
}

export function looksLikeToken(value: string): boolean {
  return value.startsWith("tss_") || value.startsWith("tsr_");
}

export function hashSecret(secret: string): string {
  // One-shot: the same digest without a Hash object per call (this runs on every create and login).
  return hash("sha256", secret, "base64url");
}

/**
 * Constant-time equality of two stored hashes (both base64url sha256, so equal length when valid): every
 * character is compared whatever the earlier ones were, so the time depends on the length only. A string
 * loop rather than timingSafeEqual: copying both strings into Buffers cost more than the sha256 itself on
 * the validation hot path.
 */
export function hashesEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}
