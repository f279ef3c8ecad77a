/**
 * DNS-rebinding protection for /mcp (MCP transport spec: servers MUST validate Origin). A page on
 * evil.example that re-resolves its name to 127.0.0.1 reaches us with `Host: evil.example` and
 * `Origin: http://evil.example`; both are refused unless configured.
 *
 * Allowed by default: loopback names (localhost, 127.0.0.1, [::1]) and the configured listen HOST, on any
 * port. `TESSERA_MCP_ALLOWED_HOSTS` adds host names; `TESSERA_MCP_ALLOWED_ORIGINS` adds exact origins
 * (scheme://host[:port]). `*` in either list switches that check off (behind a proxy that checks).
 * A request without Origin (any non-browser client) passes the Origin check.
 */
export type HostGuardOptions = {
  listenHost: string;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
};

export type HostVerdict = { ok: true } | { ok: false; reason: string };

const LOOPBACK = ["localhost", "127.0.0.1", "[::1]"];
const WILDCARD_BINDS = new Set(["0.0.0.0", "::", "[::]"]);

export function createHostGuard(options: HostGuardOptions) {
  const anyHost = options.allowedHosts.includes("*");
  const anyOrigin = options.allowedOrigins.includes("*");
  const hosts = new Set(LOOPBACK);
  const listen = normalizeHostname(options.listenHost);
  if (listen !== undefined && !WILDCARD_BINDS.has(listen)) hosts.add(listen);
  for (const host of options.allowedHosts) {
    const name = normalizeHostname(host);
    if (name !== undefined) hosts.add(name);
  }
  const origins = new Set<string>();
  for (const origin of options.allowedOrigins) {
    const normalized = normalizeOrigin(origin);
    if (normalized !== undefined) origins.add(normalized);
  }

  return (headers: { host?: string | undefined; origin?: string | string[] | undefined }): HostVerdict => {
    if (!anyHost) {
      const name = headers.host === undefined ? undefined : normalizeHostname(headers.host);
      if (name === undefined || !hosts.has(name)) return { ok: false, reason: "Host not allowed" };
    }
    const origin = headers.origin;
    if (origin === undefined || anyOrigin) return { ok: true };
    if (typeof origin !== "string") return { ok: false, reason: "Origin not allowed" };
    const normalized = normalizeOrigin(origin);
    if (normalized === undefined) return { ok: false, reason: "Origin not allowed" };
    if (origins.has(normalized)) return { ok: true };
    // Loopback and the configured host are trusted on any port and scheme, like the Host check.
    const name = normalizeHostname(new URL(normalized).host);
    return name !== undefined && (LOOPBACK.includes(name) || name === listen)
      ? { ok: true }
      : { ok: false, reason: "Origin not allowed" };
  };
}

export type HostGuard = ReturnType<typeof createHostGuard>;

/** `Example.COM:8080` → `example.com`; `[::1]:80` → `[::1]`; undefined when it is not a host. */
function normalizeHostname(value: string): string | undefined {
  const trimmed = value.trim();
  if (trimmed === "") return undefined;
  // A bare IPv6 address (how HOST is usually written) needs brackets to parse as a URL host.
  const candidate = trimmed.includes(":") && !trimmed.startsWith("[") && trimmed.split(":").length > 2;
  try {
    return new URL(`http://${candidate ? `[${trimmed}]` : trimmed}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

function normalizeOrigin(value: string): string | undefined {
  try {
    const url = new URL(value.trim());
    if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
    return url.origin.toLowerCase();
  } catch {
    return undefined;
  }
}
