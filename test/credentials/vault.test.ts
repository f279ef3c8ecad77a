import { randomBytes, randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { compileFastCheck } from "../../src/adapters/codec/fast-check.ts";
import { createSessionBody } from "../../src/adapters/http/schemas.ts";
import { createInMemoryCredentialKeyStore } from "../../src/adapters/memory/credential-key-store.ts";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import {
  CredentialCryptoError,
  openCredentials,
  sealCredentials,
  unwrapDataKey,
  wrapDataKey,
} from "../../src/app/credential-crypto.ts";
import { createCredentialShredder } from "../../src/app/credential-shredder.ts";
import { type CredentialKeyStore, createCredentialVault } from "../../src/app/credential-vault.ts";
import { loadConfig } from "../../src/config.ts";
import { type SealedCredentials, sessionStream } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { auditRowOf } from "../../src/projections/audit-row.ts";
import { catchUp } from "../../src/projections/runner.ts";
import { metadata, newSessionId, sessionCreated } from "../contract/event-fixtures.ts";

/**
 * Crypto-shredding without any server: the ciphers and their bindings, the vault over the in-memory log and
 * key store, and the shredder's guarantees (every ending purges, a crash or a replay purges nothing twice).
 */

const clock = { now: () => Date.now() };
const masterKey = randomBytes(32);

async function appendCreated(log: EventLog, sessionId: string, credentials?: SealedCredentials) {
  const created = sessionCreated(sessionId);
  created.data.credentials = credentials;
  await log.append(sessionStream(sessionId), created, metadata(), {
    expectedVersion: 0,
    messageId: randomUUID(),
  });
}

async function appendInvalidated(log: EventLog, sessionId: string) {
  const { version } = await log.readStream(sessionStream(sessionId));
  await log.append(
    sessionStream(sessionId),
    {
      type: "SessionInvalidated",
      version: 1,
      data: { sessionId, userId: "user-1", reason: "logout", invalidatedAt: new Date().toISOString() },
    },
    metadata(),
    { expectedVersion: version, messageId: randomUUID() },
  );
}

describe("credential crypto", () => {
  it("opens what it sealed, only for the same session and data key", () => {
    const dataKey = randomBytes(32);
    const a = newSessionId();
    const b = newSessionId();
    const sealed = sealCredentials(dataKey, a, '{"jira_token":"MARKER-1"}');
    expect(JSON.stringify(sealed)).not.toContain("MARKER-1");
    expect(openCredentials(dataKey, a, sealed)).toBe('{"jira_token":"MARKER-1"}');
    // Moved to another session (AAD), or opened with another key: refused, never garbage.
    expect(() => openCredentials(dataKey, b, sealed)).toThrow(CredentialCryptoError);
    expect(() => openCredentials(randomBytes(32), a, sealed)).toThrow(CredentialCryptoError);
    const flipped = Buffer.from(sealed.ciphertext, "base64url");
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    expect(() =>
      openCredentials(dataKey, a, { ...sealed, ciphertext: flipped.toString("base64url") }),
    ).toThrow(CredentialCryptoError);
    // A truncated tag would weaken GCM; it is refused rather than accepted at its shorter length.
    expect(() => openCredentials(dataKey, a, { ...sealed, tag: sealed.tag.slice(0, 8) })).toThrow(
      CredentialCryptoError,
    );
  });

  it("wraps a data key for one session under one master key", () => {
    const dataKey = randomBytes(32);
    const a = newSessionId();
    const wrapped = wrapDataKey(masterKey, a, dataKey, 0);
    expect(unwrapDataKey(masterKey, a, wrapped).equals(dataKey)).toBe(true);
    expect(() => unwrapDataKey(masterKey, newSessionId(), wrapped)).toThrow(CredentialCryptoError);
    expect(() => unwrapDataKey(randomBytes(32), a, wrapped)).toThrow(/another master key/);
  });
});

describe("credential vault", () => {
  it("reads back sealed credentials, refuses a ciphertext moved to another session, and is gone once shredded", async () => {
    const log = createInMemoryEventLog();
    const keys = createInMemoryCredentialKeyStore();
    const vault = createCredentialVault({ keys, masterKey, log, clock });
    const a = newSessionId();
    const b = newSessionId();
    const sealed = await vault.seal(a, { jira_token: "MARKER-2" });
    await appendCreated(log, a, sealed);
    expect(await vault.open(a)).toEqual({ jira_token: "MARKER-2" });

    // Session b's event carries a's ciphertext, and b even has a's wrapped key: still unreadable.
    await appendCreated(log, b, sealed);
    await keys.put(b, (await keys.get(a)) as NonNullable<Awaited<ReturnType<CredentialKeyStore["get"]>>>);
    await expect(vault.open(b)).rejects.toMatchObject({ code: "credentials_unreadable" });

    const none = newSessionId();
    await appendCreated(log, none);
    await expect(vault.open(none)).rejects.toMatchObject({ code: "credentials_not_found" });

    expect(await vault.destroy(a)).toBe(true);
    expect(await vault.destroy(a)).toBe(false);
    await expect(vault.open(a)).rejects.toMatchObject({ code: "credentials_destroyed" });
    await log.close();
  });

  it("sweeps keys without a SessionCreated, and of ended sessions, once they are older than the grace", async () => {
    let now = Date.now();
    const log = createInMemoryEventLog();
    const keys = createInMemoryCredentialKeyStore();
    const vault = createCredentialVault({ keys, masterKey, log, clock: { now: () => now } });
    const orphan = newSessionId();
    await vault.seal(orphan, { token: "x" });
    const live = newSessionId();
    await appendCreated(log, live, await vault.seal(live, { token: "y" }));
    const ended = newSessionId();
    await appendCreated(log, ended, await vault.seal(ended, { token: "z" }));
    await appendInvalidated(log, ended);

    expect(await vault.sweep(60_000)).toBe(0); // all younger than the grace: a create may be appending
    now += 60_001;
    expect(await vault.sweep(60_000)).toBe(2);
    expect((await keys.sessionIds()).sort()).toEqual([live]);
    await log.close();
  });
});

describe("credential shredder", () => {
  it("purges the key of every session that ends, asks the store only about sessions it did not see created, and survives a crash and a replay", async () => {
    const log = createInMemoryEventLog();
    const keys = createInMemoryCredentialKeyStore();
    const checkpoints = createInMemoryValidationStore();
    const vault = createCredentialVault({ keys, masterKey, log, clock });
    const seal = async (id: string) => {
      await appendCreated(log, id, await vault.seal(id, { token: id }));
    };

    // Created before the shredder first runs; ended after.
    const early = newSessionId();
    await seal(early);
    const plain = newSessionId();
    await appendCreated(log, plain);
    const lookups: string[] = [];
    const purged: string[] = [];
    let failNext = true;
    const shredderWith = () =>
      createCredentialShredder({
        destroy: async (sessionId) => {
          if (failNext) {
            failNext = false;
            throw new Error("KV away");
          }
          return keys.purge(sessionId);
        },
        hasKey: async (sessionId) => {
          lookups.push(sessionId);
          return (await keys.get(sessionId)) !== undefined;
        },
        checkpoints,
        onShredded: (sessionId) => purged.push(sessionId),
      });
    // Its checkpoint says it has seen the creations already (as after a restart).
    await checkpoints.setCheckpoint("credential_keys", await log.lastPosition());

    const late = newSessionId();
    await seal(late);
    const laterPlain = newSessionId();
    await appendCreated(log, laterPlain);
    for (const id of [early, plain, late, laterPlain]) await appendInvalidated(log, id);

    // The first purge fails: the batch fails and the checkpoint stays before it.
    const before = await checkpoints.getCheckpoint("credential_keys");
    await expect(catchUp(log, shredderWith())).rejects.toThrow("KV away");
    expect(await checkpoints.getCheckpoint("credential_keys")).toBe(before);

    // A new runner (after the crash) finishes the job.
    await catchUp(log, shredderWith());
    expect(await keys.sessionIds()).toEqual([]);
    expect(purged.sort()).toEqual([early, late].sort());
    // Seen created without credentials: never looked up; created before it started: looked up.
    expect(lookups).not.toContain(laterPlain);
    expect(lookups).toContain(early);
    expect(lookups).toContain(plain);

    // A replay from the start purges nothing twice (the keys are gone) and misses nothing new.
    await checkpoints.setCheckpoint("credential_keys", 0);
    const again = newSessionId();
    await seal(again);
    await appendInvalidated(log, again);
    purged.length = 0;
    await catchUp(log, shredderWith());
    expect(purged).toEqual([again]);
    expect(await keys.sessionIds()).toEqual([]);
    await log.close();
  });
});

describe("credentials and the rest of the system", () => {
  it("leaves the create body's fast validator compiled, keeps credentials out of audit rows, and checks the master key", () => {
    expect(compileFastCheck(createSessionBody)).toBeDefined();
    const created = sessionCreated(newSessionId());
    created.data.credentials = { alg: "A256GCM", iv: "aXY", ciphertext: "Y3Q", tag: "dGFn" };
    const row = auditRowOf(
      { ...created, metadata: metadata(), stream: sessionStream("x"), position: 1 },
      undefined,
    );
    expect(row.data).not.toHaveProperty("credentials");
    expect(row.data).toHaveProperty("sessionId");

    const key = randomBytes(32);
    expect(loadConfig({ TESSERA_CREDENTIALS_KEY: key.toString("base64") }).credentials.masterKey).toEqual(
      key,
    );
    expect(loadConfig({ TESSERA_CREDENTIALS_KEY: key.toString("base64url") }).credentials.masterKey).toEqual(
      key,
    );
    expect(() => loadConfig({ TESSERA_CREDENTIALS_KEY: randomBytes(16).toString("base64") })).toThrow(
      /TESSERA_CREDENTIALS_KEY/,
    );
    expect(() => loadConfig({ TESSERA_CREDENTIALS_KEY: "not base64!" })).toThrow(/TESSERA_CREDENTIALS_KEY/);
  });
});
