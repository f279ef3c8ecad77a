import {
  CredentialCryptoError,
  type MasterKeyRing,
  unwrapDataKey,
  wrapDataKey,
} from "./credential-crypto.ts";
import type { CredentialKeyStore, StoredKey } from "./credential-vault.ts";

/**
 * Master-key rotation (docs/credentials.md, "Rotating the master key"): data keys wrapped under a previous
 * master key are re-wrapped under the current one, so the previous key can leave the configuration. Every
 * write is a compare-and-set on the revision that was read: the shredder may purge the entry between the
 * read and the write, and a plain put would then resurrect a key that crypto-shredding destroyed.
 */

export type RewrapReport = {
  /** Opened under a previous key and written back under the current one. */
  rewrapped: number;
  /** Already under the current key. */
  current: number;
  /** Open under no configured key (an unknown kid, or damaged). Left in place: never deleted here. */
  unreadable: number;
  /** Purged or rewritten between the read and the write: left as they are. */
  changed: number;
  /** Still under a previous key when the pass ended (it changed meanwhile and is not current yet). */
  underPreviousKey: number;
  /** The sessions of the unreadable entries (at most UNREADABLE_LISTED), for the operator to look into. */
  unreadableSessionIds: string[];
};

const UNREADABLE_LISTED = 100;

/**
 * Writes `dataKey`, opened from `stored` under a previous key, back under the current key — only if the
 * entry is still at the revision read. `at` is kept: the orphan sweep's grace counts from the create.
 */
export async function writeBackUnderCurrent(
  keys: CredentialKeyStore,
  ring: MasterKeyRing,
  sessionId: string,
  stored: StoredKey,
  dataKey: Buffer,
): Promise<boolean> {
  const wrapped = wrapDataKey(ring.current, sessionId, dataKey, stored.wrapped.at);
  return keys.update(sessionId, wrapped, stored.revision);
}

/** One pass over every stored key (the sweep, `tessera credentials rewrap`). Safe beside other passes. */
export async function rewrapAll(keys: CredentialKeyStore, ring: MasterKeyRing): Promise<RewrapReport> {
  const report: RewrapReport = {
    rewrapped: 0,
    current: 0,
    unreadable: 0,
    changed: 0,
    underPreviousKey: 0,
    unreadableSessionIds: [],
  };
  for (const sessionId of await keys.sessionIds()) {
    const stored = await keys.read(sessionId);
    if (stored === undefined) continue; // purged since the listing
    const outcome = await rewrapOne(keys, ring, sessionId, stored);
    if (outcome === "changed" || outcome === "changed, still previous") {
      report.changed++;
      if (outcome === "changed, still previous") report.underPreviousKey++;
    } else report[outcome]++;
    if (outcome === "unreadable" && report.unreadableSessionIds.length < UNREADABLE_LISTED)
      report.unreadableSessionIds.push(sessionId);
  }
  return report;
}

async function rewrapOne(
  keys: CredentialKeyStore,
  ring: MasterKeyRing,
  sessionId: string,
  stored: StoredKey,
): Promise<"rewrapped" | "current" | "unreadable" | "changed" | "changed, still previous"> {
  const { kid } = stored.wrapped;
  if (kid === ring.currentKid) return "current";
  const masterKey = ring.find(kid);
  if (masterKey === undefined) return "unreadable";
  let dataKey: Buffer;
  try {
    dataKey = unwrapDataKey(masterKey, sessionId, stored.wrapped);
  } catch (error) {
    if (!(error instanceof CredentialCryptoError)) throw error;
    return "unreadable";
  }
  try {
    if (await writeBackUnderCurrent(keys, ring, sessionId, stored, dataKey)) return "rewrapped";
  } finally {
    dataKey.fill(0);
  }
  // Lost the compare-and-set: purged (and it stays purged), or rewritten by another pass or instance
  // (during a roll, possibly one whose current key is this one's previous key: the next pass takes it).
  const now = await keys.read(sessionId);
  const stillPrevious = now !== undefined && now.wrapped.kid !== ring.currentKid;
  return stillPrevious && ring.find(now.wrapped.kid) !== undefined ? "changed, still previous" : "changed";
}
