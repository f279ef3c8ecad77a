import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from "fastify";
import { HttpProblem } from "./problem.ts";

/**
 * Rate limits on the endpoints an attacker would hammer: the token endpoint (per client IP and per
 * username, so neither one address nor one account can be brute-forced) and validation (per IP). Fixed
 * windows counted in this instance's memory (@fastify/rate-limit's LRU store): with N instances behind
 * a balancer the effective limit is up to N times the setting. An exceeded limit answers 429 with
 * `Retry-After` (problem+json `rate_limited`; the token endpoint adds RFC 6749 `error` members).
 */

export type RateLimitSettings = {
  windowSeconds: number;
  /** Requests per window; 0 switches a limit off. */
  tokenPerIp: number;
  tokenPerUsername: number;
  validatePerIp: number;
};

type Check = (request: FastifyRequest) => Promise<void>;

export function rateLimited(retryAfterSeconds: number): HttpProblem {
  const seconds = Math.max(1, retryAfterSeconds);
  return new HttpProblem(
    429,
    "rate_limited",
    `Too many requests; retry in ${seconds} s`,
    { retry_after: seconds },
    { "retry-after": String(seconds) },
  );
}

function limiter(
  app: FastifyInstance,
  max: number,
  windowSeconds: number,
  key: (request: FastifyRequest) => string | undefined,
): Check | undefined {
  if (max <= 0) return undefined;
  const apply = app.createRateLimit({
    max,
    timeWindow: windowSeconds * 1000,
    keyGenerator: (request) => key(request) ?? "",
  });
  return async (request) => {
    if (key(request) === undefined) return;
    const result = await apply(request);
    if (!result.isAllowed && result.isExceeded) throw rateLimited(result.ttlInSeconds);
  };
}

function all(checks: Array<Check | undefined>): Check {
  const active = checks.filter((check): check is Check => check !== undefined);
  return async (request) => {
    for (const check of active) await check(request);
  };
}

const VALIDATE_ROUTE = "/v1/sessions/validate";
/** Keys (client addresses) a window counter is kept for, as @fastify/rate-limit's in-memory store. */
const MAX_TRACKED_KEYS = 5_000;

type Window = { startedAt: number; count: number };

/**
 * A fixed-window counter per key, in this process's memory: the same rule as @fastify/rate-limit's
 * local store (the window starts with a key's first request; past `max` requests in it, refuse until
 * it ends), but synchronous. The validation limit runs on every validation, where the plugin's limiter
 * (a chain of awaits per request) cost more than the validation itself. When more than 5,000 keys are
 * tracked, the key whose window started longest ago is forgotten (its count starts again).
 *
 * Returns a check: undefined when the request is allowed, else the seconds until the window ends.
 */
export function fixedWindowLimiter(
  max: number,
  windowMs: number,
  now: () => number = Date.now,
): (key: string) => number | undefined {
  const windows = new Map<string, Window>();
  return (key) => {
    const at = now();
    let window = windows.get(key);
    if (window === undefined || window.startedAt + windowMs <= at) {
      if (window !== undefined) windows.delete(key);
      else if (windows.size >= MAX_TRACKED_KEYS) {
        const oldest = windows.keys().next().value;
        if (oldest !== undefined) windows.delete(oldest);
      }
      window = { startedAt: at, count: 0 };
      windows.set(key, window);
    }
    window.count++;
    if (window.count <= max) return undefined;
    return Math.ceil((window.startedAt + windowMs - at) / 1000);
  };
}

/**
 * Registers the limiter plugin and the validation limit. Must run before the routes are registered:
 * the validation route is picked up as it is added.
 */
export function rateLimitPlugin(settings: RateLimitSettings) {
  return async (app: FastifyInstance) => {
    await app.register(rateLimit, { global: false });
    if (settings.validatePerIp <= 0) return;
    const check = fixedWindowLimiter(settings.validatePerIp, settings.windowSeconds * 1000);
    const hook: onRequestHookHandler = (request, _reply, done) => {
      // The address itself is the key (this limiter counts nothing else): no string built per request.
      const retryAfter = check(request.ip ?? "");
      done(retryAfter === undefined ? undefined : rateLimited(retryAfter));
    };
    app.addHook("onRoute", (route) => {
      if (route.url !== VALIDATE_ROUTE || route.method !== "POST") return;
      const existing = route.onRequest;
      route.onRequest =
        existing === undefined ? [hook] : [...(Array.isArray(existing) ? existing : [existing]), hook];
    });
  };
}

/**
 * The token endpoint's limits, as a preHandler (the body is parsed by then, so the username is known).
 * Per username only for password grants; usernames are compared case-insensitively, as the directory does.
 */
export function tokenEndpointLimit(app: FastifyInstance, settings: RateLimitSettings): Check {
  return all([
    limiter(app, settings.tokenPerIp, settings.windowSeconds, (r) => `ip:${r.ip}`),
    limiter(app, settings.tokenPerUsername, settings.windowSeconds, (r) => {
      const username = (r.body as { username?: unknown } | undefined)?.username;
      return typeof username === "string" && username !== "" ? `user:${username.toLowerCase()}` : undefined;
    }),
  ]);
}
