/**
 * Fixed-window attempt counters behind the token endpoint's rate limits (docs/auth.md, "Abuse and
 * transport"). Embedded mode counts in this process's memory; distributed mode counts in a NATS KV bucket
 * every instance shares, so a limit holds for the whole deployment instead of once per instance.
 */

export type RateLimitVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface RateLimitCounter {
  /**
   * Counts one attempt of `subject` (a client address, a username) under `limit` (a short lowercase name
   * such as `ip` or `user`), unless `max` attempts are already counted in the current window: then it
   * refuses and says how many seconds remain until the window ends (at least 1).
   */
  hit(limit: string, subject: string, max: number): Promise<RateLimitVerdict>;
}
