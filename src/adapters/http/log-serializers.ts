import type { FastifyRequest } from "fastify";

// A tss_/tsr_ token anywhere in a URL: a session URL's path (/mcp/u/tss_…), or whatever a client derives
// from it (an OAuth discovery probe appends the path to /.well-known/…).
const TOKEN_IN_URL = /(ts[sr]_)[^/?#&]*/g;

/** The URL with every token in it replaced by `tss_[redacted]`; others are returned as they are. */
export function redactUrlTokens(url: string): string {
  return url.includes("ts") ? url.replace(TOKEN_IN_URL, "$1[redacted]") : url;
}

/**
 * Fastify's `req` log serializer (the "incoming request" line at debug level) with the URL's tokens
 * redacted; otherwise the same fields as Fastify's own. Headers are not logged at all.
 */
export function requestLogView(request: FastifyRequest) {
  return {
    method: request.method,
    url: redactUrlTokens(request.url),
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}
