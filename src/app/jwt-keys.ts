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

/** A public key access tokens are verified with: the signing key's, or a verify-only one (rotation). */
export type VerificationKey = {
  alg: SigningAlgorithm;
  kid: string;
  publicKey: KeyObject;
  /** The public half as published at /.well-known/jwks.json. */
  publicJwk: JWK;
};

export type SigningKey = VerificationKey & { privateKey: KeyObject };

const SIGNING_VARIABLE = "TESSERA_JWT_PRIVATE_KEY";
const VERIFY_VARIABLE = "TESSERA_JWT_VERIFY_KEYS";

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
      privateKey = createPrivateKey(unescapeNewlines(trimmed));
    }
  } catch (error) {
    throw new ConfigError([
      `${SIGNING_VARIABLE}: not a usable private key (PKCS#8 PEM or private JWK): ${reason(error)}`,
    ]);
  }
  const alg = algorithmOf(privateKey, SIGNING_VARIABLE);
  if (declared.alg !== undefined && declared.alg !== alg) {
    throw new ConfigError([`${SIGNING_VARIABLE}: the JWK says alg ${declared.alg}, but the key is ${alg}`]);
  }
  const publicKey = createPublicKey(privateKey);
  return { ...(await describe(publicKey, alg, declared.kid)), privateKey };
}

/** A fresh Ed25519 key for embedded mode: tokens die with the process, as does everything else there. */
export async function generateSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { ...(await describe(publicKey, "EdDSA", undefined)), privateKey };
}

/**
 * Parses TESSERA_JWT_VERIFY_KEYS: public keys that verify access tokens besides the signing key, so a key
 * can be rotated with an overlap (docs/auth.md). Accepted: a JWK Set (`{"keys":[…]}`), a JSON array of
 * JWKs, one JWK, or one or more PEM public keys (`-----BEGIN PUBLIC KEY-----`, one after the other; literal
 * `\n` accepted). Each key's kid is its JWK's `kid`, else its RFC 7638 thumbprint — the kid the instances
 * that sign with it put in their tokens. Private keys are refused: an instance that only verifies with a
 * key must not be able to sign with it. Every problem is reported at once, naming the variable.
 */
export async function loadVerifyKeys(text: string, signing: { kid: string }): Promise<VerificationKey[]> {
  const problems: string[] = [];
  const candidates = parseVerifyKeys(text.trim(), problems);
  const keys: VerificationKey[] = [];
  const seen = new Map<string, string>([
    [signing.kid, `the signing key's (${SIGNING_VARIABLE}), which verifies anyway; list only other keys`],
  ]);
  for (const [index, candidate] of candidates.entries()) {
    const label = `${VERIFY_VARIABLE}: key ${index + 1}`;
    if ("problem" in candidate) {
      problems.push(`${label}: ${candidate.problem}`);
      continue;
    }
    let alg: SigningAlgorithm;
    try {
      alg = algorithmOf(candidate.publicKey, label);
    } catch (error) {
      problems.push(...(error instanceof ConfigError ? error.problems : [`${label}: ${reason(error)}`]));
      continue;
    }
    if (candidate.alg !== undefined && candidate.alg !== alg) {
      problems.push(`${label}: the JWK says alg ${candidate.alg}, but the key is ${alg}`);
      continue;
    }
    const key = await describe(candidate.publicKey, alg, candidate.kid);
    const holder = seen.get(key.kid);
    if (holder !== undefined) {
      problems.push(`${label}: duplicate kid "${key.kid}": it is already ${holder}`);
      continue;
    }
    seen.set(key.kid, `key ${index + 1}'s`);
    keys.push(key);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return keys;
}

type Candidate =
  | { publicKey: KeyObject; kid?: string | undefined; alg?: string | undefined }
  | { problem: string };

/** Members that only a private (or secret) JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4.1). */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

function parseVerifyKeys(text: string, problems: string[]): Candidate[] {
  if (text.startsWith("{") || text.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      problems.push(`${VERIFY_VARIABLE}: not valid JSON: ${reason(error)}`);
      return [];
    }
    const list = Array.isArray(parsed)
      ? parsed
      : isObject(parsed) && "keys" in parsed
        ? parsed.keys
        : [parsed];
    if (!Array.isArray(list)) {
      problems.push(`${VERIFY_VARIABLE}: "keys" must be an array of JWKs`);
      return [];
    }
    return list.map(jwkCandidate);
  }
  return pemCandidates(unescapeNewlines(text), problems);
}

function jwkCandidate(entry: unknown): Candidate {
  if (!isObject(entry) || typeof entry.kty !== "string") return { problem: "not a JWK (no kty)" };
  const secret = PRIVATE_MEMBERS.filter((member) => member in entry);
  if (secret.length > 0) {
    return {
      problem: `is a private or secret key (has ${secret.join(", ")}); give only the public half`,
    };
  }
  if (entry.kid !== undefined && (typeof entry.kid !== "string" || entry.kid === "")) {
    return { problem: "kid must be a non-empty string" };
  }
  if (entry.alg !== undefined && typeof entry.alg !== "string") return { problem: "alg must be a string" };
  // A key published for encryption must not be accepted for signatures (RFC 7517 §4.2).
  if (entry.use !== undefined && entry.use !== "sig") {
    return { problem: `use is ${String(entry.use)}, not sig` };
  }
  try {
    return {
      publicKey: createPublicKey({ key: entry as JsonWebKey, format: "jwk" }),
      kid: entry.kid,
      alg: entry.alg,
    };
  } catch (error) {
    return { problem: `not a usable public JWK: ${reason(error)}` };
  }
}

function pemCandidates(text: string, problems: string[]): Candidate[] {
  const blocks = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)];
  const outside = blocks.reduce((rest, block) => rest.replace(block[0], ""), text).trim();
  if (blocks.length === 0 || outside !== "") {
    problems.push(
      `${VERIFY_VARIABLE}: not a JWK Set, a JSON array of JWKs, a JWK or PEM public keys` +
        (blocks.length === 0 ? "" : " (there is text outside the PEM blocks)"),
    );
    return [];
  }
  return blocks.map(([pem, label]): Candidate => {
    if (label?.includes("PRIVATE KEY")) {
      return {
        problem: `is a private key (BEGIN ${label}); give only the public half (openssl pkey -pubout)`,
      };
    }
    if (label !== "PUBLIC KEY" && label !== "RSA PUBLIC KEY") {
      return { problem: `unsupported PEM block BEGIN ${label ?? ""}; give -----BEGIN PUBLIC KEY-----` };
    }
    try {
      return { publicKey: createPublicKey(pem) };
    } catch (error) {
      return { problem: `not a usable public key: ${reason(error)}` };
    }
  });
}

async function describe(
  publicKey: KeyObject,
  alg: SigningAlgorithm,
  kid: string | undefined,
): Promise<VerificationKey> {
  const exported = publicKey.export({ format: "jwk" }) as JWK;
  const resolvedKid = kid ?? (await calculateJwkThumbprint(exported));
  return { alg, kid: resolvedKid, publicKey, publicJwk: { ...exported, kid: resolvedKid, alg, use: "sig" } };
}

/** `where` names the variable (and key) in the message, so the operator knows which value to fix. */
function algorithmOf(key: KeyObject, where: string): SigningAlgorithm {
  const type = key.asymmetricKeyType;
  if (type === "ed25519") return "EdDSA";
  if (type === "rsa") {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      throw new ConfigError([`${where}: RSA keys must have at least 2048 bits`]);
    }
    return "RS256";
  }
  if (type === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1") return "ES256";
    if (curve === "secp384r1") return "ES384";
  }
  throw new ConfigError([
    `${where}: unsupported key type ${type ?? "unknown"} (use Ed25519, EC P-256/P-384 or RSA)`,
  ]);
}

function unescapeNewlines(text: string): string {
  return text.includes("\\n") ? text.replaceAll("\\n", "\n") : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0]!.slice(0, 200) : String(error);
}
