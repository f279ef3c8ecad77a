import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock } from "../../src/adapters/clock/fake-clock.ts";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, startDistributed } from "../support/tessera.ts";
import { addUser, tokenRequest } from "./helpers.ts";

/** Rate limits on the token endpoint (per IP, per username) and on validation (per IP). */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let tessera: Tessera;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("rl");
  database = await createTestDatabase();
  tessera = await startDistributed({
    prefix,
    databaseUrl: database.url,
    // The token endpoint's windows are aligned to the clock; one that stands still keeps every attempt
    // below in one window.
    clock: createFakeClock(Math.floor(Date.now() / 60_000) * 60_000 + 1_000),
    env: {
      TESSERA_RATE_LIMIT_TOKEN_PER_IP: "6",
      TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "3",
      TESSERA_RATE_LIMIT_VALIDATE_PER_IP: "4",
      TESSERA_RATE_LIMIT_WINDOW_SECONDS: "60",
    },
  });
});

afterAll(async () => {
  await tessera?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

const attempt = (username: string, password: string, remoteAddress: string) =>
  tokenRequest(tessera, { grant_type: "password", username, password }, { remoteAddress });

describe("token endpoint", () => {
  it("limits attempts per username, across addresses and letter case, with Retry-After", async () => {
    const user = await addUser(tessera, "target");
    const codes = [];
    for (const [i, name] of ["target", "TARGET", "Target"].entries()) {
      codes.push((await attempt(name, "wrong-password", `10.1.0.${i}`)).statusCode);
    }
    expect(codes).toEqual([400, 400, 400]);
    // The fourth try is refused before the password is even checked, even with the right one.
    const limited = await attempt("target", user.password, "10.1.0.9");
    expect(limited.statusCode).toBe(429);
    const retryAfter = Number(limited.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(limited.headers["content-type"]).toContain("application/problem+json");
    expect(limited.json()).toMatchObject({
      error: "rate_limited",
      error_description: expect.any(String),
      code: "rate_limited",
      status: 429,
    });
    // Another account from the same addresses is unaffected.
    const other = await addUser(tessera, "bystander");
    expect((await attempt("bystander", other.password, "10.1.0.9")).statusCode).toBe(200);
  });

  it("limits attempts per client address, whatever the usernames", async () => {
    const codes = [];
    for (let i = 0; i < 7; i++)
      codes.push((await attempt(`nobody-${i}`, "whatever-1", "10.2.0.1")).statusCode);
    expect(codes.slice(0, 6)).toEqual([400, 400, 400, 400, 400, 400]);
    expect(codes[6]).toBe(429);
    expect((await attempt("nobody-x", "whatever-1", "10.2.0.2")).statusCode).toBe(400);
  });
});

describe("validation", () => {
  it("limits validations per client address with 429 problem+json and Retry-After", async () => {
    const created = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: "validated" },
    });
    const { token } = created.json();
    const validate = (remoteAddress: string) =>
      tessera.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token }, remoteAddress });
    for (let i = 0; i < 4; i++) expect((await validate("10.3.0.1")).statusCode).toBe(200);
    const limited = await validate("10.3.0.1");
    expect(limited.statusCode).toBe(429);
    expect(limited.headers["content-type"]).toContain("application/problem+json");
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect(limited.json()).toMatchObject({ code: "rate_limited", status: 429 });
    expect((await validate("10.3.0.2")).statusCode).toBe(200);
  });
});
