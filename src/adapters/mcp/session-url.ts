import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from "fastify";
import { createHostGuard, type HostGuardOptions } from "./host-guard.ts";

/**
 * Session URLs (seed 002, RelayForge's `sessionUrl`): `<public base>/mcp/u/<tss_ token>` is a complete MCP
 * server URL — a client configured with nothing else reaches /mcp as that session's bearer. The path
 * segment is the session token itself, so the URL is exactly as powerful, and as revocable, as the token
 * the same create response returns (docs/mcp.md, "With a session URL", says why no separate secret).
 */
export const SESSION_URL_PATH = "/mcp/u/";
export const SESSION_URL_ROUTE = `${SESSION_URL_PATH}:token`;

/** What the rest of the request (problem `instance`, the SDK transport, logs) sees as its URL. */
const REDACTED_URL = `${SESSION_URL_PATH}tss_[redacted]`;

/**
 * onRequest hook of the session-URL routes: the path's token becomes the request's only credential, and
 * the request is served by the /mcp handlers unchanged (same order of checks, same answers). An
 * `Authorization` or `x-admin-key` sent along is ignored — a URL never means more than its session. The
 * URL is replaced by a redacted one before anything else reads it.
 */
export function credentialFromPath(request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  const { token } = request.params as { token?: string };
  request.raw.url = REDACTED_URL;
  // Anything but a session token's characters (a JWT, spaces) becomes the malformed token `tss_`: refused
  // exactly as /mcp refuses a malformed bearer, and never offered to the JWT or IdP authenticators.
  const credential = token !== undefined && SESSION_TOKEN_CHARACTERS.test(token) ? token : "tss_";
  // Fastify merges these over the raw headers (request.headers' setter); undefined removes one.
  request.headers = { authorization: `Bearer ${credential}`, "x-admin-key": undefined };
  done();
}

const SESSION_TOKEN_CHARACTERS = /^tss_[A-Za-z0-9_-]{1,200}$/;

type McpHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
type McpRouteArguments = [McpHandler] | [RouteShorthandOptions, McpHandler];

/**
 * Where the /mcp plugin registers its routes: each one is registered twice, at /mcp and at the session
 * URL (with credentialFromPath first), so the two can never answer differently.
 */
export function alsoAtSessionUrl(app: FastifyInstance) {
  const twice =
    (method: "GET" | "POST" | "DELETE") =>
    (url: "/mcp", ...rest: McpRouteArguments) => {
      const [options, handler] = rest.length === 1 ? [{}, rest[0]] : rest;
      app.route({ ...options, method, url, handler });
      app.route({ ...options, method, url: SESSION_URL_ROUTE, onRequest: credentialFromPath, handler });
    };
  return { post: twice("POST"), get: twice("GET"), delete: twice("DELETE") };
}

export type SessionUrlOptions = {
  /** TESSERA_PUBLIC_URL (no trailing slash). */
  publicUrl: string | undefined;
  /** /mcp's Host check: without a public URL, only a Host it accepts may name the session URL. */
  hostGuard: HostGuardOptions;
};

/** The session URL of `token` for a create answered on `request`, or undefined when none can be given. */
export type SessionUrlOf = (request: FastifyRequest, token: string) => string | undefined;

// host[:port] or [ipv6][:port], nothing else: a Host like `a.example/evil` or `x@y` must not shape the URL.
const PLAIN_HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * With TESSERA_PUBLIC_URL: `<public URL>/mcp/u/<token>`. Without: the request's own scheme and Host, but
 * only when /mcp would accept that Host (loopback, HOST, TESSERA_MCP_ALLOWED_HOSTS) — so a forged Host
 * cannot make Tessera hand out a URL pointing elsewhere, and every URL it gives works. The scheme is the
 * connection's (trustProxy is off: X-Forwarded-Proto is not believed); with `*` in the allowed hosts
 * nothing vouches for the Host, so no URL is given unless the public URL is configured.
 */
export function createSessionUrls(options: SessionUrlOptions): SessionUrlOf {
  if (options.publicUrl !== undefined) {
    const base = `${options.publicUrl}${SESSION_URL_PATH}`;
    return (_request, token) => base + token;
  }
  if (options.hostGuard.allowedHosts.includes("*")) return () => undefined;
  const guard = createHostGuard({ ...options.hostGuard, allowedOrigins: [] });
  // The last Host accepted: nearly every create names the same one, and the guard parses it as a URL
  // (~1 µs); one entry, so Hosts chosen by callers cannot grow it.
  let accepted: string | undefined;
  return (request, token) => {
    const host = request.headers.host;
    if (host === undefined) return undefined;
    if (host !== accepted) {
      if (!PLAIN_HOST.test(host) || !guard({ host }).ok) return undefined;
      accepted = host;
    }
    return `${request.protocol}://${host}${SESSION_URL_PATH}${token}`;
  };
}
