import { createPrivateKey, createSecretKey, generateKeyPairSync } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeJwt, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock } from "../../src/adapters/clock/fake-clock.ts";
import { loadSigningKey } from "../../src/app/jwt-keys.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { createTessera, type Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  NATS_URL,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import {
  adminHeaders,
  bearer,
  eventually,
  startDistributed,
  TEST_JWT_PRIVATE_KEY,
} from "../support/tessera.ts";
import { addUser, getSession, login, type TokenResponse } from "./helpers.ts";

/**
 * Access JWTs on two instances: every forged or stale variant is refused, and a token is refused the
 * moment its session ends anywhere. Instance `a` runs on a fake clock so expiry is exact, without sleeps.
 */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let a: Tessera;
let b: Tessera;
const clock = createFakeClock(Date.now());
const env = {
  TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0",
  TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0",
  TESSERA_ACCESS_TOKEN_TTL_SECONDS: "600",
};

let user: Awaited<ReturnType<typeof addUser>>;
let token: TokenResponse;
let claims: JWTPayload;
const realKey = createPrivateKey(TEST_JWT_PRIVATE_KEY);

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("jwt");
  database = await createTestDatabase();
  a = await startDistributed({ prefix, databaseUrl: database.url, env, clock });
  b = await startDistributed({ prefix, databaseUrl: database.url, env });
  user = await addUser(a, "jwt-user");
  token = await login(a, "jwt-user", user.password);
  claims = decodeJwt(token.access_token);
});

afterAll(async () => {
  await a?.close();
  await b?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

/** Signs `payload` (defaults: the real token's claims) with `key` and header overrides. */
function forge(
  overrides: {
    payload?: Partial<JWTPayload>;
    header?: Record<string, unknown>;
    key?: Parameters<SignJWT["sign"]>[0];
  } = {},
) {
  const header = { alg: "EdDSA", kid: a.auth.accessTokens.kid, typ: "at+jwt", ...overrides.header };
  return new SignJWT({ ...claims, ...overrides.payload })
    .setProtectedHeader(header as { alg: string })
    .sign(overrides.key ?? realKey);
}

async function refusedWith(on: Tessera, jwt: string) {
  const response = await getSession(on, token.session_id, jwt);
  expect(response.statusCode, response.body).toBe(401);
  expect(response.headers["content-type"]).toContain("application/problem+json");
  expect(response.headers["www-authenticate"]).toContain("Bearer");
  return (response.json() as { reason?: string }).reason;
}

describe("the signing key", () => {
  it("is required in distributed mode, and must be a usable private key", async () => {
    const base = { NATS_URL, DATABASE_URL: database.url, TESSERA_PREFIX: prefix, LOG_LEVEL: "silent" };
    await expect(createTessera(loadConfig(base))).rejects.toThrow(/TESSERA_JWT_PRIVATE_KEY: required/);
    await expect(
      createTessera(loadConfig({ ...base, TESSERA_JWT_PRIVATE_KEY: "not a key" })),
    ).rejects.toBeInstanceOf(ConfigError);
  });

  it("loads PEM (also with escaped newlines) and JWK; the kid is the key's, the same on every instance", async () => {
    const pem = await loadSigningKey(TEST_JWT_PRIVATE_KEY);
    expect(pem.kid).toBe(a.auth.accessTokens.kid);
    expect(b.auth.accessTokens.kid).toBe(pem.kid);
    expect((await loadSigningKey(TEST_JWT_PRIVATE_KEY.replaceAll("\n", "\\n"))).kid).toBe(pem.kid);
    const jwk = { ...realKey.export({ format: "jwk" }), kid: "my-key" };
    const fromJwk = await loadSigningKey(JSON.stringify(jwk));
    expect(fromJwk).toMatchObject({ kid: "my-key", alg: "EdDSA" });
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    });
    expect((await loadSigningKey(ec.toString())).alg).toBe("ES256");
    await expect(loadSigningKey(JSON.stringify({ ...jwk, d: undefined }))).rejects.toBeInstanceOf(
      ConfigError,
    );
  });
});

describe("a genuine token", () => {
  it("works on both instances, and a re-signed copy of it works too (the test forger is faithful)", async () => {
    expect((await getSession(a, token.session_id, token.access_token)).statusCode).toBe(200);
    expect((await getSession(b, token.session_id, token.access_token)).statusCode).toBe(200);
    expect((await getSession(b, token.session_id, await forge())).statusCode).toBe(200);
  });
});

describe("forged and stale tokens are refused", () => {
  it("alg none", async () => {
    const unsigned = new UnsecuredJWT({ ...claims }).encode();
    expect(await refusedWith(a, unsigned)).toBe("alg_not_allowed");
    // Same, with our kid in the header so it is routed to our verifier.
    const [, body] = unsigned.split(".");
    const withKid = `${Buffer.from(JSON.stringify({ alg: "none", kid: a.auth.accessTokens.kid })).toString("base64url")}.${body}.`;
    expect(await refusedWith(b, withKid)).toBe("alg_not_allowed");
  });

  it("HS256 keyed with the public key (algorithm confusion)", async () => {
    const publicPem = Buffer.from(JSON.stringify(a.auth.accessTokens.jwks().keys[0]));
    const jwt = await forge({ header: { alg: "HS256" }, key: createSecretKey(publicPem) });
    expect(await refusedWith(a, jwt)).toBe("alg_not_allowed");
  });

  it("wrong kid, and a foreign key claiming our kid", async () => {
    const otherKey = generateKeyPairSync("ed25519").privateKey;
    // Our issuer, someone else's kid: ours to judge, and no key of ours matches.
    expect(await refusedWith(a, await forge({ header: { kid: "someone-elses-key" }, key: otherKey }))).toBe(
      "unknown_key",
    );
    expect(await refusedWith(a, await forge({ header: { kid: "someone-elses-key" } }))).toBe("unknown_key");
    // Our kid, signed by another key.
    expect(await refusedWith(b, await forge({ key: otherKey }))).toBe("bad_signature");
  });

  it("tampered payload or signature", async () => {
    const [header, body, signature] = token.access_token.split(".") as [string, string, string];
    const payload = JSON.parse(Buffer.from(body, "base64url").toString());
    const elevated = Buffer.from(
      JSON.stringify({ ...payload, scope: "admin:sessions", roles: ["admin"] }),
    ).toString("base64url");
    expect(await refusedWith(a, `${header}.${elevated}.${signature}`)).toBe("bad_signature");
    const flipped = signature.slice(0, 10) + (signature[10] === "A" ? "B" : "A") + signature.slice(11);
    expect(await refusedWith(b, `${header}.${body}.${flipped}`)).toBe("bad_signature");
  });

  it("wrong issuer, audience or type", async () => {
    expect(await refusedWith(a, await forge({ payload: { iss: "evil" } }))).toBe("wrong_issuer");
    expect(await refusedWith(a, await forge({ payload: { aud: "another-api" } }))).toBe("wrong_audience");
    expect(await refusedWith(b, await forge({ header: { typ: "JWT" } }))).toBe("wrong_type");
  });

  it("not yet valid, and expired", async () => {
    const now = Math.floor(clock.now() / 1000);
    expect(await refusedWith(a, await forge({ payload: { nbf: now + 600 } }))).toBe("not_yet_valid");
    expect(await refusedWith(a, await forge({ payload: { iat: now - 1200, exp: now - 600 } }))).toBe(
      "expired",
    );
    expect(await refusedWith(b, await forge({ payload: { iat: now - 1200, exp: now - 600 } }))).toBe(
      "expired",
    );
  });

  it("missing claims, a session id of another user's session, an unknown session", async () => {
    expect(await refusedWith(a, await forge({ payload: { sid: undefined } }))).toBe("invalid_claims");
    const other = await addUser(a, "jwt-other");
    const theirs = await login(a, "jwt-other", other.password);
    // Correctly signed, but claims a session that is not the subject's.
    expect(await refusedWith(b, await forge({ payload: { sid: theirs.session_id } }))).toBe(
      "subject_mismatch",
    );
    expect(
      await refusedWith(b, await forge({ payload: { sid: "0190a0c0-0000-7000-8000-000000000000" } })),
    ).toBe("session_not_found");
  });
});

describe("revocation is immediate", () => {
  it("an admin ending all of a user's sessions on one instance refuses the JWT on the other at once", async () => {
    const victim = await addUser(a, "jwt-revoked");
    const sessions = [
      await login(a, "jwt-revoked", victim.password),
      await login(b, "jwt-revoked", victim.password),
    ];
    for (const s of sessions)
      expect((await getSession(b, s.session_id, s.access_token)).statusCode).toBe(200);
    const revoke = await a.app.inject({
      method: "DELETE",
      url: `/v1/users/${victim.id}/sessions`,
      headers: adminHeaders,
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    expect(revoke.json()).toEqual({ count: 2, user_id: victim.id });
    for (const s of sessions) {
      const elapsed = await eventually(
        async () => (await getSession(b, s.session_id, s.access_token)).statusCode === 401,
        2_000,
      );
      expect(elapsed).toBeLessThan(500);
      expect((await getSession(a, s.session_id, s.access_token)).statusCode).toBe(401);
    }
  });

  it("IP binding: a JWT used from another address is refused (TESSERA_BINDING=ip)", async () => {
    const bound = await startDistributed({
      prefix,
      databaseUrl: database.url,
      env: { ...env, TESSERA_BINDING: "ip" },
    });
    try {
      const person = await addUser(bound, "jwt-bound");
      const session = await login(bound, "jwt-bound", person.password, {}, { remoteAddress: "10.0.0.1" });
      expect((await getSession(bound, session.session_id, session.access_token, "10.0.0.1")).statusCode).toBe(
        200,
      );
      const elsewhere = await getSession(bound, session.session_id, session.access_token, "10.9.9.9");
      expect(elsewhere.statusCode).toBe(401);
      expect(elsewhere.json().reason).toBe("session_binding_mismatch");
      const refresh = await bound.app.inject({
        method: "POST",
        url: "/v1/auth/token",
        remoteAddress: "10.9.9.9",
        payload: { grant_type: "refresh_token", refresh_token: session.refresh_token },
      });
      expect(refresh.json()).toMatchObject({ error: "invalid_grant" });
    } finally {
      await bound.close();
    }
  });

  it("an access token never outlives its session (expires_in is capped at the session's expiry)", async () => {
    const short = await addUser(a, "jwt-short");
    const session = await a.auth.login.passwordLogin(
      { username: "jwt-short", password: short.password, ttlSeconds: 120 },
      { commandId: `test-${Date.now()}`, source: "rest" },
    );
    expect(session.expiresIn).toBeLessThanOrEqual(120);
    expect(decodeJwt(session.accessToken).exp).toBeLessThanOrEqual(
      Math.floor(session.session.expiresAt / 1000),
    );
    expect(bearer(session.token).authorization).toMatch(/^Bearer tss_/);
  });
});

describe("time", () => {
  it("a real token once its own expiry has passed (fake clock; the session itself is still active)", async () => {
    const second = await login(a, "jwt-user", user.password);
    expect((await getSession(a, second.session_id, second.access_token)).statusCode).toBe(200);
    // Moves `a` ten minutes ahead for good, which is why this test runs last.
    clock.advance(610_000);
    const response = await getSession(a, second.session_id, second.access_token);
    expect(response.statusCode).toBe(401);
    expect(response.json().reason).toBe("expired");
    // A refresh gives a fresh one for the same session.
    const renewed = await a.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "refresh_token", refresh_token: second.refresh_token },
    });
    expect(renewed.statusCode, renewed.body).toBe(200);
    expect((await getSession(a, second.session_id, renewed.json().access_token)).statusCode).toBe(200);
  });
});
