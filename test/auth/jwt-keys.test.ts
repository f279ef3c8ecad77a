import { createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { loadSigningKey, loadVerifyKeys } from "../../src/app/jwt-keys.ts";
import { ConfigError } from "../../src/config.ts";

/**
 * TESSERA_JWT_VERIFY_KEYS, the verify-only public keys of a key rotation: every accepted format, and every
 * bad value refused with a ConfigError that names the variable. Real keys throughout (node:crypto).
 */
const VARIABLE = "TESSERA_JWT_VERIFY_KEYS";

const ed25519 = () => generateKeyPairSync("ed25519");
const spkiPem = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();
const pkcs8Pem = (key: KeyObject) => key.export({ type: "pkcs8", format: "pem" }).toString();
const publicJwk = (key: KeyObject) => key.export({ format: "jwk" }) as JWK;

const signing = ed25519();
const signingKid = { kid: await calculateJwkThumbprint(publicJwk(signing.publicKey)) };
const old = ed25519();
const oldThumbprint = await calculateJwkThumbprint(publicJwk(old.publicKey));

/** The problems of the ConfigError `loadVerifyKeys` throws for `text` (fails the test if it does not). */
async function problemsOf(text: string, against = signingKid): Promise<string[]> {
  const error = await loadVerifyKeys(text, against).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConfigError);
  const problems = (error as ConfigError).problems;
  for (const problem of problems) expect(problem).toContain(VARIABLE);
  return problems;
}

describe("TESSERA_JWT_VERIFY_KEYS formats", () => {
  it("a JWK Set: kid declared or the RFC 7638 thumbprint, alg from the key type, published without extras", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const keys = await loadVerifyKeys(
      JSON.stringify({
        keys: [
          publicJwk(old.publicKey),
          { ...publicJwk(ec.publicKey), kid: "ec-2024", alg: "ES256", use: "sig" },
          { ...publicJwk(rsa.publicKey), x5t: "ignored" },
        ],
      }),
      signingKid,
    );
    expect(keys.map((k) => [k.kid, k.alg])).toEqual([
      [oldThumbprint, "EdDSA"],
      ["ec-2024", "ES256"],
      [await calculateJwkThumbprint(publicJwk(rsa.publicKey)), "RS256"],
    ]);
    expect(keys[0]?.publicJwk).toEqual({
      ...publicJwk(old.publicKey),
      kid: oldThumbprint,
      alg: "EdDSA",
      use: "sig",
    });
    expect(keys[2]?.publicJwk).not.toHaveProperty("x5t");
    expect(keys[0]?.publicKey.type).toBe("public");
  });

  it("the kid of a thumbprinted verify key is the one the instance signing with that key uses", async () => {
    const [fromPem] = await loadVerifyKeys(spkiPem(old.publicKey), signingKid);
    expect(fromPem?.kid).toBe((await loadSigningKey(pkcs8Pem(old.privateKey))).kid);
    const named = { ...(old.privateKey.export({ format: "jwk" }) as JWK), kid: "old-key" };
    const [fromJwk] = await loadVerifyKeys(
      JSON.stringify({ ...publicJwk(old.publicKey), kid: "old-key" }),
      signingKid,
    );
    expect(fromJwk?.kid).toBe((await loadSigningKey(JSON.stringify(named))).kid);
  });

  it("a JSON array of JWKs, and a single JWK", async () => {
    const other = ed25519();
    const array = await loadVerifyKeys(
      JSON.stringify([publicJwk(old.publicKey), publicJwk(other.publicKey)]),
      signingKid,
    );
    expect(array.map((k) => k.kid)).toEqual([
      oldThumbprint,
      await calculateJwkThumbprint(publicJwk(other.publicKey)),
    ]);
    const single = await loadVerifyKeys(JSON.stringify(publicJwk(old.publicKey)), signingKid);
    expect(single.map((k) => k.kid)).toEqual([oldThumbprint]);
  });

  it("PEM public keys, one after the other, also on one line with literal \\n; PKCS#1 RSA too", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-384" });
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pkcs1 = rsa.publicKey.export({ type: "pkcs1", format: "pem" }).toString();
    const text = `${spkiPem(old.publicKey)}\n${spkiPem(ec.publicKey)}${pkcs1}`;
    const keys = await loadVerifyKeys(text, signingKid);
    expect(keys.map((k) => k.alg)).toEqual(["EdDSA", "ES384", "RS256"]);
    expect(keys[0]?.kid).toBe(oldThumbprint);
    const escaped = await loadVerifyKeys(text.replaceAll("\n", "\\n"), signingKid);
    expect(escaped.map((k) => k.kid)).toEqual(keys.map((k) => k.kid));
  });

  it("an empty JWK Set is no extra key", async () => {
    expect(await loadVerifyKeys('{"keys":[]}', signingKid)).toEqual([]);
  });
});

describe("TESSERA_JWT_VERIFY_KEYS refuses, naming the variable", () => {
  it("private keys, as PEM and as JWK, and secret keys", async () => {
    expect((await problemsOf(pkcs8Pem(old.privateKey))).join()).toMatch(/private key/);
    const encrypted = old.privateKey
      .export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "secret-phrase" })
      .toString();
    expect((await problemsOf(encrypted)).join()).toMatch(/private key/);
    const privateJwk = old.privateKey.export({ format: "jwk" });
    expect((await problemsOf(JSON.stringify({ keys: [privateJwk] }))).join()).toMatch(/private.*has d/);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
    expect((await problemsOf(JSON.stringify([rsa]))).join()).toMatch(/private/);
    expect(
      (await problemsOf(JSON.stringify({ kty: "oct", k: "c2VjcmV0LXNlY3JldC1zZWNyZXQ" }))).join(),
    ).toMatch(/secret/);
    // A public key next to a private one does not make the private one acceptable.
    expect(await problemsOf(`${spkiPem(old.publicKey)}${pkcs8Pem(old.privateKey)}`)).toHaveLength(1);
  });

  it("duplicate kids, among the keys and equal to the signing key's", async () => {
    const twice = await problemsOf(JSON.stringify([publicJwk(old.publicKey), publicJwk(old.publicKey)]));
    expect(twice.join()).toContain(`key 2: duplicate kid "${oldThumbprint}"`);
    const named = await problemsOf(
      JSON.stringify([
        { ...publicJwk(old.publicKey), kid: "k1" },
        { ...publicJwk(ed25519().publicKey), kid: "k1" },
      ]),
    );
    expect(named.join()).toContain('duplicate kid "k1"');
    const signingAgain = await problemsOf(spkiPem(signing.publicKey));
    expect(signingAgain.join()).toMatch(/signing key's \(TESSERA_JWT_PRIVATE_KEY\)/);
    const declaredLikeSigning = await problemsOf(
      JSON.stringify({ ...publicJwk(old.publicKey), kid: signingKid.kid }),
    );
    expect(declaredLikeSigning.join()).toContain(`duplicate kid "${signingKid.kid}"`);
  });

  it("malformed values", async () => {
    expect((await problemsOf("not a key")).join()).toMatch(/not a JWK Set/);
    expect((await problemsOf('{"keys": [')).join()).toMatch(/not valid JSON/);
    expect((await problemsOf('{"keys": {}}')).join()).toMatch(/"keys" must be an array/);
    expect((await problemsOf('[{"crv":"Ed25519"}]')).join()).toMatch(/not a JWK/);
    expect((await problemsOf('{"kty":"OKP","crv":"Ed25519","x":"@@"}')).join()).toMatch(
      /not a usable public JWK/,
    );
    expect((await problemsOf(`garbage\n${spkiPem(old.publicKey)}`)).join()).toMatch(/outside the PEM/);
    const cut = spkiPem(old.publicKey).replace(/\n[A-Za-z0-9+/=]{10}/, "\n");
    expect((await problemsOf(cut)).join()).toMatch(/not a usable public key/);
    expect((await problemsOf("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")).join()).toMatch(
      /unsupported PEM block/,
    );
    expect((await problemsOf(JSON.stringify({ ...publicJwk(old.publicKey), kid: 7 }))).join()).toMatch(
      /kid must be a non-empty string/,
    );
  });

  it("a declared alg that is not the key's, a key not for signatures, unsupported key types", async () => {
    expect(
      (await problemsOf(JSON.stringify({ ...publicJwk(old.publicKey), alg: "ES256" }))).join(),
    ).toContain("the JWK says alg ES256, but the key is EdDSA");
    expect((await problemsOf(JSON.stringify({ ...publicJwk(old.publicKey), use: "enc" }))).join()).toMatch(
      /use is enc/,
    );
    const x25519 = generateKeyPairSync("x25519").publicKey;
    expect((await problemsOf(spkiPem(x25519))).join()).toMatch(/unsupported key type x25519/);
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey;
    expect((await problemsOf(spkiPem(small))).join()).toMatch(/at least 2048 bits/);
  });

  it("reports every bad key at once, each by its position", async () => {
    const problems = await problemsOf(
      JSON.stringify([publicJwk(old.publicKey), { kty: "OKP" }, old.privateKey.export({ format: "jwk" })]),
    );
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain(`${VARIABLE}: key 2`);
    expect(problems[1]).toContain(`${VARIABLE}: key 3`);
  });

  it("publishes a verify key's JWK even when it is built from PEM (kty, crv, x; never d)", async () => {
    const [key] = await loadVerifyKeys(spkiPem(old.publicKey), signingKid);
    expect(key?.publicJwk).toMatchObject({ kty: "OKP", crv: "Ed25519", x: publicJwk(old.publicKey).x });
    expect(key?.publicJwk).not.toHaveProperty("d");
    expect(createPublicKey({ key: key?.publicJwk as JsonWebKey, format: "jwk" }).equals(old.publicKey)).toBe(
      true,
    );
  });
});
