import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import type { SealedCredentials } from "../domain/events.ts";

/**
 * The cryptography of crypto-shredding (docs/credentials.md), and nothing else: AES-256-GCM with a random
 * 96-bit IV, both for the credentials under a session's data key and for the data key under the master key.
 * Each is bound to its session by the additional authenticated data, so a ciphertext or a wrapped key copied
 * to another session fails to open instead of handing one session's secrets to another.
 */

const ALGORITHM = "aes-256-gcm";
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

/** A session's data key wrapped under the master key, as the key store holds it (base64url fields). */
export type WrappedKey = {
  /** Which master key wrapped it (a digest, never the key): a wrong key is told apart from a damaged entry. */
  kid: string;
  iv: string;
  key: string;
  tag: string;
  /** When it was written (epoch ms): the orphan sweep leaves young keys alone. */
  at: number;
};

/** The master key failed to open a value: another key, or the value was altered or moved. */
export class CredentialCryptoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CredentialCryptoError";
  }
}

export const newDataKey = (): Buffer => randomBytes(KEY_BYTES);

/** A short public identifier of a master key: sha256 over a label and the key, 8 bytes. */
export function keyIdOf(masterKey: Buffer): string {
  return createHash("sha256")
    .update("tessera credential master key\u0000")
    .update(masterKey)
    .digest()
    .subarray(0, 8)
    .toString("base64url");
}

/**
 * The master keys an instance holds (TESSERA_CREDENTIALS_KEY, then TESSERA_CREDENTIALS_PREVIOUS_KEYS): new
 * data keys are wrapped under `current` only; a previous key only opens what it wrapped before a rotation,
 * until the entry is re-wrapped under `current` (credential-rewrap.ts).
 */
export type MasterKeyRing = {
  current: Buffer;
  currentKid: string;
  /** The configured key whose kid this is (the current one or a previous one), or undefined. */
  find(kid: string): Buffer | undefined;
  /** Whether any previous key is configured (a rotation is under way). */
  rotating: boolean;
};

export function masterKeyRing(current: Buffer, previous: readonly Buffer[] = []): MasterKeyRing {
  // Digests once, not per read. The configuration refuses a previous key equal to another configured key.
  const byKid = new Map<string, Buffer>();
  for (const key of previous) byKid.set(keyIdOf(key), key);
  const currentKid = keyIdOf(current);
  byKid.set(currentKid, current);
  return { current, currentKid, find: (kid) => byKid.get(kid), rotating: previous.length > 0 };
}

const credentialsAad = (sessionId: string) => Buffer.from(`tessera.credentials\u0000${sessionId}`);
const dataKeyAad = (sessionId: string) => Buffer.from(`tessera.data-key\u0000${sessionId}`);

export function sealCredentials(dataKey: Buffer, sessionId: string, plaintext: string): SealedCredentials {
  const { iv, ciphertext, tag } = encrypt(dataKey, credentialsAad(sessionId), Buffer.from(plaintext, "utf8"));
  return { alg: "A256GCM", iv, ciphertext, tag };
}

/** The JSON text sealed for `sessionId`; throws CredentialCryptoError for any other session or key. */
export function openCredentials(dataKey: Buffer, sessionId: string, sealed: SealedCredentials): string {
  if (sealed.alg !== "A256GCM") throw new CredentialCryptoError(`unknown algorithm ${sealed.alg}`);
  return decrypt(dataKey, credentialsAad(sessionId), sealed).toString("utf8");
}

export function wrapDataKey(masterKey: Buffer, sessionId: string, dataKey: Buffer, at: number): WrappedKey {
  const { iv, ciphertext, tag } = encrypt(masterKey, dataKeyAad(sessionId), dataKey);
  return { kid: keyIdOf(masterKey), iv, key: ciphertext, tag, at };
}

export function unwrapDataKey(masterKey: Buffer, sessionId: string, wrapped: WrappedKey): Buffer {
  if (wrapped.kid !== keyIdOf(masterKey)) {
    throw new CredentialCryptoError("the data key was wrapped under another master key");
  }
  const key = decrypt(masterKey, dataKeyAad(sessionId), {
    iv: wrapped.iv,
    ciphertext: wrapped.key,
    tag: wrapped.tag,
  });
  if (key.length !== KEY_BYTES) throw new CredentialCryptoError("the data key has the wrong length");
  return key;
}

function encrypt(key: Buffer, aad: Buffer, plaintext: Buffer) {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return {
    iv: iv.toString("base64url"),
    ciphertext: ciphertext.toString("base64url"),
    tag: cipher.getAuthTag().toString("base64url"),
  };
}

function decrypt(key: Buffer, aad: Buffer, parts: { iv: string; ciphertext: string; tag: string }): Buffer {
  const iv = Buffer.from(parts.iv, "base64url");
  const tag = Buffer.from(parts.tag, "base64url");
  // A short tag would weaken GCM's authentication; Node accepts shorter ones unless told the length.
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES)
    throw new CredentialCryptoError("malformed ciphertext");
  try {
    const decipher = createDecipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(Buffer.from(parts.ciphertext, "base64url")), decipher.final()]);
  } catch {
    // Node's message says only "Unsupported state or unable to authenticate data"; nothing to add.
    throw new CredentialCryptoError("the ciphertext does not open under this key for this session");
  }
}
