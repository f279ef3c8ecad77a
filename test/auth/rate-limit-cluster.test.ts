import formbody from "@fastify/formbody";
import Fastify from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { authRoutesPlugin } from "../../src/adapters/http/routes/auth.ts";
import { createKvRateLimitCounter } from "../../src/adapters/nats-kv/rate-limit-counter.ts";
import type { AccessTokens } from "../../src/app/jwt.ts";
import type { LoginService } from "../../src/app/login-service.ts";
import type { Tessera } from "../../src/main.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";
import { type Pair, startPair } from "../support/tessera.ts";
import { addUser, tokenRequest } from "./helpers.ts";

/**
 * The token endpoint's limits hold for the deployment, not per instance: two instances count in one NATS
 * KV bucket, so alternating between them buys an attacker nothing.
 */

const WINDOW_S = 60;
/** One second into a window, so no attempt below straddles a window boundary. */
const clock = createFakeClock(Math.floor(Date.now() / 60_000) * 60_000 + 1_000);
let pair: Pair;

beforeAll(async () => {
  pair = await startPair("rlx", {
    clock,
    env: {
      TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "3",
      TESSERA_RATE_LIMIT_TOKEN_PER_IP: "5",
      TESSERA_RATE_LIMIT_WINDOW_SECONDS: String(WINDOW_S),
    },
  });
});

afterAll(async () => {
  await pair?.close();
});

const attempt = (on: Tessera, username: string, password: string, remoteAddress: string) =>
  tokenRequest(on, { grant_type: "password", username, password }, { remoteAddress });

describe("token endpoint limits across instances", () => {
  it("refuses the 4th attempt on a username, whichever instance gets it", async () => {
    const { a, b } = pair;
    const user = await addUser(a, "shared-target");
    const codes = [];
    for (const [i, on] of [a, b, a].entries()) {
      codes.push((await attempt(on, "shared-target", "wrong-password", `10.9.0.${i}`)).statusCode);
    }
    expect(codes).toEqual([400, 400, 400]);

    const limited = await attempt(b, "Shared-Target", "wrong-password", "10.9.0.3");
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBe(WINDOW_S - 1);
    expect(limited.headers["content-type"]).toContain("application/problem+json");
    expect(limited.json()).toMatchObject({ error: "rate_limited", code: "rate_limited", status: 429 });
    // The other instance refuses too, the right password included.
    expect((await attempt(a, "shared-target", user.password, "10.9.0.4")).statusCode).toBe(429);

    // The next window starts afresh on both.
    clock.advance(WINDOW_S * 1000);
    expect((await attempt(b, "shared-target", user.password, "10.9.0.5")).statusCode).toBe(200);
  });

  it("refuses the 6th attempt from one address, across instances and usernames", async () => {
    const { a, b } = pair;
    const codes = [];
    for (let i = 0; i < 6; i++) {
      const on = i % 2 === 0 ? a : b;
      codes.push((await attempt(on, `nobody-${i}`, "whatever-1", "10.8.0.1")).statusCode);
    }
    expect(codes).toEqual([400, 400, 400, 400, 400, 429]);
    expect((await attempt(a, "nobody-x", "whatever-1", "10.8.0.2")).statusCode).toBe(400);
  });
});

describe("token endpoint when the counter cannot reach NATS", () => {
  it("answers 503 temporarily_unavailable with Retry-After and never tries the login", async () => {
    const nc = await connectNats();
    const prefix = uniquePrefix("rlu");
    let logins = 0;
    const app = Fastify();
    try {
      const counter = await createKvRateLimitCounter({ nc, prefix, windowSeconds: WINDOW_S, clock });
      app.setValidatorCompiler(validatorCompiler);
      app.setSerializerCompiler(serializerCompiler);
      await app.register(formbody);
      await app.register(
        authRoutesPlugin({
          login: {
            passwordLogin: async () => {
              logins++;
              throw new Error("not reached");
            },
          } as unknown as LoginService,
          accessTokens: {} as AccessTokens,
          authenticate: async () => undefined,
          ids: { uuidv7: () => "0190b2c4-0000-7000-8000-000000000000" },
          rateLimit: { windowSeconds: WINDOW_S, tokenPerIp: 5, tokenPerUsername: 3, validatePerIp: 0 },
          rateLimitCounter: counter,
        }),
      );
      await removeNatsPrefix(nc, prefix);
      await nc.close();
      const response = await app.inject({
        method: "POST",
        url: "/v1/auth/token",
        payload: { grant_type: "password", username: "someone", password: "pass-word-1" },
      });
      expect(response.statusCode).toBe(503);
      expect(response.headers["retry-after"]).toBe("1");
      expect(response.json()).toMatchObject({ error: "temporarily_unavailable" });
      expect(logins).toBe(0);
    } finally {
      await app.close();
      if (!nc.isClosed()) {
        await removeNatsPrefix(nc, prefix);
        await nc.close();
      }
    }
  });
});
