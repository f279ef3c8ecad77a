import { createHash, timingSafeEqual } from "node:crypto";

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
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function formatToken(kind: TokenKind, sessionId: string, secret: string): string {
  return `${PREFIX_BY_KIND[kind]}${sessionId}_${secret}`;
}

export function parseToken(token: string, expected: TokenKind): ParsedToken | undefined {
  if (token.length !== TOKEN_LENGTH || !token.startsWith(PREFIX_BY_KIND[expected])) return undefined;
  if (token.charCodeAt(4 + UUID_LENGTH) !== 95 /* _ */) return undefined;
  const sessionId = token.slice(4, 4 + UUID_LENGTH);
  const secret = token.slice(5 + UUID_LENGTH);
  if (!UUID_PATTERN.test(sessionId) || !SECRET_PATTERN.test(secret)) return undefined;
  return { kind: expected, sessionId, secret };
}

export function looksLikeToken(value: string): boolean {
  return value.startsWith("tss_") || value.startsWith("tsr_");
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("base64url");
}

/** Constant-time equality of two stored hashes (both base64url sha256, so equal length when valid). */
export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}
