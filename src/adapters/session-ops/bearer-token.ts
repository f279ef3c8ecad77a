/**
 * The credential of an `Authorization: Bearer <credential>` header (RFC 6750 §2.1; the scheme is
 * case-insensitive), or undefined when the header is absent or not of that form. Shared by every
 * transport that reads one (REST, the fast validation path, WebSocket upgrades, gRPC metadata).
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return BEARER.exec(header)?.[1];
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
