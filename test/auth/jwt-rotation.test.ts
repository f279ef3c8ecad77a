import { generateKeyPairSync, type KeyObject } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import { startDistributed } from "../support/tessera.ts";
import { addUser, getSession, login, type TokenResponse } from "./helpers.ts";

/**
 * Signing-key rotation with TESSERA_JWT_VERIFY_KEYS (docs/auth.md): an instance that signs with the new key
 * and lists the old one accepts the old key's tokens — every other check unchanged — and publishes both;
 * a key it does not list stays `unknown_key`. Real keys, real signatures, instances on the real NATS and
 * Postgres (one prefix and database for the file, as one deployment whose instances differ only in keys).
 */
const pkcs8 = (key: KeyObject) => key.export({ type: "pkcs8", format: "pem" }).toString();
const spki = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();
const jwkOf = (key: KeyObject) => key.export({ format: "jwk" }) as JWK;
const thumbprint = (key: KeyObject) => calculateJwkThumbprint(jwkOf(key));

const noRateLimits = { TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0", TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0" };
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
const started: Tessera[] = [];

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("jwtrot");
  database = await createTestDatabase();
});

afterAll(async () => {
  for (const instance of started) await instance.close();
  if (nc) await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

/** An instance signing with `privateKey` and given `verifyKeys` (TESSERA_JWT_VERIFY_KEYS) if any. */
async function start(privateKey: KeyObject, verifyKeys?: string) {
  const instance = await startDistributed({
    prefix,
    databaseUrl: database.url,
    env: {
      ...noRateLimits,
      TESSERA_JWT_PRIVATE_KEY: pkcs8(privateKey),
      ...(verifyKeys === undefined ? {} : { TESSERA_JWT_VERIFY_KEYS: verifyKeys }),
    },
  });
  started.push(instance);
  return instance;
}

async function refusedWith(on: Tessera, session: TokenResponse, jwt: string) {
  const response = await getSession(on, session.session_id, jwt);
  expect(response.statusCode, response.body).toBe(401);
  expect(response.headers["www-authenticate"]).toContain("Bearer");
  return (response.json() as { reason?: string }).reason;
}

async function jwksOf(on: Tessera): Promise<{ keys: JWK[] }> {
  const response = await on.app.inject({ method: "GET", url: "/.well-known/jwks.json" });
  expect(response.statusCode).toBe(200);
  return response.json();
}

describe("one instance: signs with the new key, lists the old Ed25519 key and a legacy EC key", () => {
  const newKey = generateKeyPairSync("ed25519");
  const oldKey = generateKeyPairSync("ed25519");
  const legacyEc = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const unlisted = generateKeyPairSync("ed25519");
  let tessera: Tessera;
  let session: TokenResponse;
  let claims: JWTPayload;
  let password: string;
  let kids: { new: string; old: string; legacy: string };

  beforeAll(async () => {
    tessera = await start(
      newKey.privateKey,
      JSON.stringify({
        keys: [jwkOf(oldKey.publicKey), { ...jwkOf(legacyEc.publicKey), kid: "legacy-ec", alg: "ES256" }],
      }),
    );
    const demo = await addUser(tessera, "demo");
    password = demo.password;
    session = await login(tessera, "demo", password);
    claims = decodeJwt(session.access_token);
    kids = {
      new: await thumbprint(newKey.publicKey),
      old: await thumbprint(oldKey.publicKey),
      legacy: "legacy-ec",
    };
  });

  /** The real token's claims, signed by `key` under the given header (typ at+jwt unless overridden). */
  function sign(
    key: KeyObject,
    header: { alg: string; kid?: string; typ?: string },
    payload: JWTPayload = {},
  ) {
    return new SignJWT({ ...claims, ...payload }).setProtectedHeader({ typ: "at+jwt", ...header }).sign(key);
  }

  it("issues new tokens with the signing key's kid", () => {
    expect(decodeProtectedHeader(session.access_token)).toEqual({
      alg: "EdDSA",
      kid: kids.new,
      typ: "at+jwt",
    });
  });

  it("accepts a token signed by a listed key (old Ed25519, legacy ES256), under that key's kid", async () => {
    for (const jwt of [
      session.access_token,
      await sign(oldKey.privateKey, { alg: "EdDSA", kid: kids.old }),
      await sign(legacyEc.privateKey, { alg: "ES256", kid: kids.legacy }),
    ]) {
      const response = await getSession(tessera, session.session_id, jwt);
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json()).toMatchObject({ id: session.session_id, username: "demo" });
    }
  });

  it("refuses a key it does not list with unknown_key, and a listed kid with another key's signature", async () => {
    const ownKid = await thumbprint(unlisted.publicKey);
    expect(
      await refusedWith(tessera, session, await sign(unlisted.privateKey, { alg: "EdDSA", kid: ownKid })),
    ).toBe("unknown_key");
    expect(await refusedWith(tessera, session, await sign(unlisted.privateKey, { alg: "EdDSA" }))).toBe(
      "unknown_key",
    );
    expect(
      await refusedWith(tessera, session, await sign(unlisted.privateKey, { alg: "EdDSA", kid: kids.old })),
    ).toBe("bad_signature");
  });

  it("refuses a kid with another alg than its key's (each key verifies only with its own alg)", async () => {
    // The legacy EC key's kid, EdDSA-signed by the listed old key: both alg and key are ours, not together.
    expect(
      await refusedWith(tessera, session, await sign(oldKey.privateKey, { alg: "EdDSA", kid: kids.legacy })),
    ).toBe("alg_not_allowed");
    expect(
      await refusedWith(tessera, session, await sign(legacyEc.privateKey, { alg: "ES256", kid: kids.old })),
    ).toBe("alg_not_allowed");
    expect(
      await refusedWith(tessera, session, await sign(legacyEc.privateKey, { alg: "ES256", kid: kids.new })),
    ).toBe("alg_not_allowed");
    // An alg none of the keys has.
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    expect(await refusedWith(tessera, session, await sign(p384, { alg: "ES384", kid: kids.legacy }))).toBe(
      "alg_not_allowed",
    );
  });

  it("checks everything else as for the signing key: issuer, audience, type, expiry, the session", async () => {
    const old = (payload: JWTPayload, header: { typ?: string } = {}) =>
      sign(oldKey.privateKey, { alg: "EdDSA", kid: kids.old, ...header }, payload);
    // A foreign issuer under a listed kid is still ours to judge, not left to another authenticator.
    expect(await refusedWith(tessera, session, await old({ iss: "someone-else" }))).toBe("wrong_issuer");
    expect(await refusedWith(tessera, session, await old({ aud: "another-api" }))).toBe("wrong_audience");
    expect(await refusedWith(tessera, session, await old({}, { typ: "JWT" }))).toBe("wrong_type");
    const now = Math.floor(Date.now() / 1000);
    expect(await refusedWith(tessera, session, await old({ iat: now - 1200, exp: now - 600 }))).toBe(
      "expired",
    );

    const other = await login(tessera, "demo", password);
    const oldSigned = await new SignJWT({ ...decodeJwt(other.access_token) })
      .setProtectedHeader({ alg: "EdDSA", kid: kids.old, typ: "at+jwt" })
      .sign(oldKey.privateKey);
    expect((await getSession(tessera, other.session_id, oldSigned)).statusCode).toBe(200);
    const logout = await tessera.app.inject({
      method: "POST",
      url: "/v1/auth/logout",
      headers: { authorization: `Bearer ${oldSigned}` },
    });
    expect(logout.statusCode, logout.body).toBe(200);
    expect(await refusedWith(tessera, other, oldSigned)).toBe("session_invalidated");
  });

  it("publishes the signing key first, then the listed keys, with their kids and algs (no private parts)", async () => {
    const { keys } = await jwksOf(tessera);
    expect(keys.map((k) => [k.kid, k.alg, k.use])).toEqual([
      [kids.new, "EdDSA", "sig"],
      [kids.old, "EdDSA", "sig"],
      [kids.legacy, "ES256", "sig"],
    ]);
    expect(keys[1]).toMatchObject({ kty: "OKP", crv: "Ed25519", x: jwkOf(oldKey.publicKey).x });
    expect(keys[2]).toMatchObject({ kty: "EC", crv: "P-256", x: jwkOf(legacyEc.publicKey).x });
    for (const key of keys) expect(key.d).toBeUndefined();
    // A relying party with this JWKS alone verifies the new key's tokens and the old key's.
    const relyingParty = createLocalJWKSet({ keys });
    const options = { issuer: "tessera", audience: "tessera" };
    await expect(jwtVerify(session.access_token, relyingParty, options)).resolves.toBeDefined();
    const oldSigned = await sign(oldKey.privateKey, { alg: "EdDSA", kid: kids.old });
    await expect(jwtVerify(oldSigned, relyingParty, options)).resolves.toBeDefined();
  });
});

describe("the documented rotation, across instances sharing NATS and Postgres", () => {
  const oldKey = generateKeyPairSync("ed25519");
  const newKey = generateKeyPairSync("ed25519");
  /** before: old key only; step 1: old signs, new listed; step 2: new signs, old listed; step 3: new only. */
  let before: Tessera;
  let step1: Tessera;
  let step2: Tessera;
  let step3: Tessera;
  let kids: { old: string; new: string };

  beforeAll(async () => {
    before = await start(oldKey.privateKey);
    step1 = await start(oldKey.privateKey, spki(newKey.publicKey));
    step2 = await start(newKey.privateKey, spki(oldKey.publicKey));
    step3 = await start(newKey.privateKey);
    kids = { old: await thumbprint(oldKey.publicKey), new: await thumbprint(newKey.publicKey) };
  });

  it("tokens in flight keep working through the roll; only dropping the old key ends them", async () => {
    const user = await addUser(before, "rotating-user");
    const oldToken = await login(before, "rotating-user", user.password);
    expect(decodeProtectedHeader(oldToken.access_token).kid).toBe(kids.old);
    const newToken = await login(step2, "rotating-user", user.password);
    expect(decodeProtectedHeader(newToken.access_token).kid).toBe(kids.new);

    const status = async (on: Tessera, token: TokenResponse) =>
      (await getSession(on, token.session_id, token.access_token)).statusCode;
    // The old key's token, on every instance that still knows the old key.
    for (const on of [before, step1, step2]) expect(await status(on, oldToken)).toBe(200);
    // The new key's token on step-1 instances (why step 1 comes first) and on the new ones.
    for (const on of [step1, step2, step3]) expect(await status(on, newToken)).toBe(200);
    // Without step 1, an instance still on the old configuration refuses new tokens.
    expect(await refusedWith(before, newToken, newToken.access_token)).toBe("unknown_key");
    // Step 3, after the access-token lifetime: the old key's token is refused.
    expect(await refusedWith(step3, oldToken, oldToken.access_token)).toBe("unknown_key");
  });

  it("an instance given a private key, or the signing key again, as a verify key refuses to start", async () => {
    const env = {
      NATS_URL,
      DATABASE_URL: database.url,
      TESSERA_PREFIX: prefix,
      LOG_LEVEL: "silent",
      TESSERA_JWT_PRIVATE_KEY: pkcs8(newKey.privateKey),
    };
    const withPrivate = createTessera(
      loadConfig({ ...env, TESSERA_JWT_VERIFY_KEYS: pkcs8(oldKey.privateKey) }),
    );
    await expect(withPrivate).rejects.toBeInstanceOf(ConfigError);
    await expect(withPrivate).rejects.toThrow("TESSERA_JWT_VERIFY_KEYS: key 1: is a private key");
    const withSigning = createTessera(
      loadConfig({ ...env, TESSERA_JWT_VERIFY_KEYS: spki(newKey.publicKey) }),
    );
    await expect(withSigning).rejects.toThrow(
      `TESSERA_JWT_VERIFY_KEYS: key 1: duplicate kid "${kids.new}": it is already the signing key's`,
    );
  });

  it("each step's JWKS: the signing key first, then the verify-only key", async () => {
    const kidsOf = async (on: Tessera) => (await jwksOf(on)).keys.map((k) => k.kid);
    expect(await kidsOf(before)).toEqual([kids.old]);
    expect(await kidsOf(step1)).toEqual([kids.old, kids.new]);
    expect(await kidsOf(step2)).toEqual([kids.new, kids.old]);
    expect(await kidsOf(step3)).toEqual([kids.new]);
  });
});
