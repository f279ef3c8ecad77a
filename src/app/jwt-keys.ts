import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import { ConfigError } from "../config.ts";

/**
 * The key access tokens are signed with. EdDSA (Ed25519) by default; an EC P-256/P-384 or RSA key from
 * TESSERA_JWT_PRIVATE_KEY works too (ES256/ES384/RS256). The `kid` is the key's RFC 7638 thumbprint
 * unless the JWK names one, so every instance given the same key publishes and expects the same kid.
 */
export type SigningAlgorithm = "EdDSA" | "ES256" | "ES384" | "RS256";

export type SigningKey = {
  alg: SigningAlgorithm;
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public half as published at /.well-known/jwks.json. */
  publicJwk: JWK;
};

/**
 * Parses TESSERA_JWT_PRIVATE_KEY (PKCS#8 PEM, or a private JWK as JSON). PEM given on one line with
 * literal `\n` (common in .env files) is accepted too.
 */
export async function loadSigningKey(text: string): Promise<SigningKey> {
  const trimmed = text.trim();
  let privateKey: KeyObject;
  let declared: { kid?: string | undefined; alg?: string | undefined } = {};
  try {
    if (trimmed.startsWith("{")) {
      const jwk = JSON.parse(trimmed) as JsonWebKey & { kid?: string; alg?: string };
      if (typeof jwk.d !== "string") throw new Error("the JWK has no private part (d)");
      declared = { kid: jwk.kid, alg: jwk.alg };
      privateKey = createPrivateKey({ key: jwk, format: "jwk" });
    } else {
      privateKey = createPrivateKey(trimmed.includes("\\n") ? trimmed.replaceAll("\\n", "\n") : trimmed);
    }
  } catch (error) {
    throw new ConfigError([
      `TESSERA_JWT_PRIVATE_KEY: not a usable private key (PKCS#8 PEM or private JWK): ${reason(error)}`,
    ]);
  }
  const alg = algorithmOf(privateKey);
  if (declared.alg !== undefined && declared.alg !== alg) {
    throw new ConfigError([
      `TESSERA_JWT_PRIVATE_KEY: the JWK says alg ${declared.alg}, but the key is ${alg}`,
    ]);
  }
  return describe(privateKey, alg, declared.kid);
}

/** A fresh Ed25519 key for embedded mode: tokens die with the process, as does everything else there. */
export async function generateSigningKey(): Promise<SigningKey> {
  return describe(generateKeyPairSync("ed25519").privateKey, "EdDSA", undefined);
}

async function describe(privateKey: KeyObject, alg: SigningAlgorithm, kid: string | undefined) {
  const publicKey = createPublicKey(privateKey);
  const exported = publicKey.export({ format: "jwk" }) as JWK;
  const thumbprint = await calculateJwkThumbprint(exported);
  const resolvedKid = kid ?? thumbprint;
  return {
    alg,
    kid: resolvedKid,
    privateKey,
    publicKey,
    publicJwk: { ...exported, kid: resolvedKid, alg, use: "sig" },
  } satisfies SigningKey;
}

function algorithmOf(key: KeyObject): SigningAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === "ed25519") return "EdDSA";
  if (type === "rsa") {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      throw new ConfigError(["TESSERA_JWT_PRIVATE_KEY: RSA keys must have at least 2048 bits"]);
    }
    return "RS256";
  }
  if (type === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1") return "ES256";
    if (curve === "secp384r1") return "ES384";
  }
  throw new ConfigError([
    `TESSERA_JWT_PRIVATE_KEY: unsupported key type ${type ?? "unknown"} (use Ed25519, EC P-256/P-384 or RSA)`,
  ]);
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0]!.slice(0, 200) : String(error);
}
