import { randomBytes, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import type { NatsConnection } from "@nats-io/transport-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInMemoryCredentialKeyStore } from "../../src/adapters/memory/credential-key-store.ts";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { createInMemoryValidationStore } from "../../src/adapters/memory/validation-store.ts";
import { createPrometheusMetrics } from "../../src/adapters/metrics/prometheus.ts";
import { createKvCredentialKeyStore } from "../../src/adapters/nats-kv/credential-key-store.ts";
import {
  keyIdOf,
  masterKeyRing,
  newDataKey,
  unwrapDataKey,
  type WrappedKey,
  wrapDataKey,
} from "../../src/app/credential-crypto.ts";
import { rewrapAll } from "../../src/app/credential-rewrap.ts";
import { type CredentialKeyStore, createCredentialVault } from "../../src/app/credential-vault.ts";
import { loadConfig } from "../../src/config.ts";
import { type SealedCredentials, sessionStream } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import { createCredentials } from "../../src/wiring/credentials.ts";
import { metadata, newSessionId, sessionCreated } from "../contract/event-fixtures.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

/**
 * Rotating the credentials master key (docs/credentials.md, "Rotating the master key"): a data key wrapped
 * under a previous key opens and is re-wrapped under the current one, on read and by a pass over the
 * store, always compare-and-set — a key the shredder purged between the read and the write stays purged,
 * on the in-memory store and on real NATS KV alike.
 */

const clock = { now: () => Date.now() };
const oldKey = randomBytes(32);
const newKey = randomBytes(32);

let nc: NatsConnection;
let prefix: string;

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("rot");
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await nc.close();
});

async function appendCreated(log: EventLog, sessionId: string, credentials: SealedCredentials) {
  const created = sessionCreated(sessionId);
  created.data.credentials = credentials;
  await log.append(sessionStream(sessionId), created, metadata(), {
    expectedVersion: 0,
    messageId: randomUUID(),
  });
}

/** The shredder purging the entry right after it was read: the window a plain put would reopen. */
function purgedRightAfterRead(store: CredentialKeyStore): CredentialKeyStore {
  return {
    ...store,
    async read(sessionId) {
      const stored = await store.read(sessionId);
      if (stored !== undefined) await store.purge(sessionId);
      return stored;
    },
  };
}

const wrappedUnder = (masterKey: Buffer, sessionId: string, at = 1_000): WrappedKey =>
  wrapDataKey(masterKey, sessionId, newDataKey(), at);

describe("the master key ring", () => {
  it("finds the current and the previous keys by kid, and nothing else", () => {
    const ring = masterKeyRing(newKey, [oldKey]);
    expect(ring.currentKid).toBe(keyIdOf(newKey));
    expect(ring.find(keyIdOf(newKey))).toBe(newKey);
    expect(ring.find(keyIdOf(oldKey))).toBe(oldKey);
    expect(ring.find(keyIdOf(randomBytes(32)))).toBeUndefined();
    expect(ring.rotating).toBe(true);
    expect(masterKeyRing(newKey).rotating).toBe(false);
  });
});

describe("the vault during a rotation", () => {
  it("opens a key wrapped under a previous key, re-wraps it on read, and after that needs the old key no more", async () => {
    const log = createInMemoryEventLog();
    const keys = createInMemoryCredentialKeyStore();
    const before = createCredentialVault({ keys, masterKey: oldKey, log, clock });
    const id = newSessionId();
    await appendCreated(log, id, await before.seal(id, { jira_token: "MARKER-R1" }));
    const sealedAt = (await keys.get(id))?.at;

    // Not configured at all: the error it always was.
    const newOnly = createCredentialVault({ keys, masterKey: newKey, log, clock });
    await expect(newOnly.open(id)).rejects.toMatchObject({ code: "credentials_unreadable" });
    expect((await keys.get(id))?.kid).toBe(keyIdOf(oldKey));

    const rotating = createCredentialVault({ keys, masterKey: newKey, previousKeys: [oldKey], log, clock });
    expect(await rotating.open(id)).toEqual({ jira_token: "MARKER-R1" });
    const after = await keys.get(id);
    expect(after?.kid).toBe(keyIdOf(newKey));
    expect(after?.at).toBe(sealedAt); // the orphan sweep's grace still counts from the create
    expect(await newOnly.open(id)).toEqual({ jira_token: "MARKER-R1" });
    // New data keys go under the current key only.
    const fresh = newSessionId();
    await rotating.seal(fresh, { x: 1 });
    expect((await keys.get(fresh))?.kid).toBe(keyIdOf(newKey));
    await log.close();
  });

  it("serves the credentials but does not resurrect a key purged between its read and the write-back", async () => {
    const log = createInMemoryEventLog();
    const keys = createInMemoryCredentialKeyStore();
    const id = newSessionId();
    const before = createCredentialVault({ keys, masterKey: oldKey, log, clock });
    await appendCreated(log, id, await before.seal(id, { jira_token: "MARKER-R2" }));
    const racing = createCredentialVault({
      ...{ keys: purgedRightAfterRead(keys), masterKey: newKey, previousKeys: [oldKey], log, clock },
    });
    expect(await racing.open(id)).toEqual({ jira_token: "MARKER-R2" });
    expect(await keys.read(id)).toBeUndefined();
    expect(await keys.sessionIds()).toEqual([]);
    await log.close();
  });
});

describe.each([
  ["memory", async () => createInMemoryCredentialKeyStore()],
  ["NATS KV", async () => createKvCredentialKeyStore({ nc, prefix })],
])("re-wrapping on the %s key store", (_name, createStore) => {
  it("updates only at the revision read: never after a purge, never over a newer value", async () => {
    const keys = await createStore();
    const id = newSessionId();
    await keys.put(id, wrappedUnder(oldKey, id));
    const first = await keys.read(id);
    if (first === undefined) throw new Error("no entry");

    const rewrapped = wrappedUnder(newKey, id);
    expect(await keys.update(id, rewrapped, first.revision)).toBe(true);
    const second = await keys.read(id);
    expect(second?.wrapped).toEqual(rewrapped);
    expect(second?.revision).toBeGreaterThan(first.revision);
    // The revision it replaced is stale now: the newer value stays.
    expect(await keys.update(id, wrappedUnder(oldKey, id), first.revision)).toBe(false);
    expect((await keys.get(id))?.kid).toBe(keyIdOf(newKey));

    // Purged after the read (the session ended): the write-back must not bring it back.
    await keys.purge(id);
    expect(await keys.update(id, wrappedUnder(newKey, id), second?.revision ?? 0)).toBe(false);
    expect(await keys.get(id)).toBeUndefined();
    // Not even once the purge marker itself is compacted away.
    await new Promise((resolve) => setTimeout(resolve, 5));
    await keys.compact?.(0);
    expect(await keys.update(id, wrappedUnder(newKey, id), second?.revision ?? 0)).toBe(false);
    expect(await keys.get(id)).toBeUndefined();
    expect(await keys.sessionIds()).not.toContain(id);
  });

  it("a pass re-wraps what a previous key wrapped, counts the current ones, reports and keeps the unreadable ones", async () => {
    const keys = await createStore();
    const underOld = newSessionId();
    const underNew = newSessionId();
    const underUnknown = newSessionId();
    const damaged = newSessionId();
    const dataKey = newDataKey();
    await keys.put(underOld, wrapDataKey(oldKey, underOld, dataKey, 1_234));
    await keys.put(underNew, wrappedUnder(newKey, underNew));
    await keys.put(underUnknown, wrappedUnder(randomBytes(32), underUnknown));
    // A previous key's kid, but moved from another session: it does not open (AAD), so it is unreadable.
    await keys.put(damaged, wrappedUnder(oldKey, underOld));

    const ring = masterKeyRing(newKey, [oldKey]);
    const report = await rewrapAll(keys, ring);
    expect(report).toMatchObject({
      rewrapped: 1,
      current: 1,
      unreadable: 2,
      changed: 0,
      underPreviousKey: 0,
    });
    expect(report.unreadableSessionIds.sort()).toEqual([underUnknown, damaged].sort());
    const rewrapped = await keys.get(underOld);
    expect(rewrapped?.kid).toBe(keyIdOf(newKey));
    expect(rewrapped?.at).toBe(1_234);
    expect(unwrapDataKey(newKey, underOld, rewrapped as WrappedKey).equals(dataKey)).toBe(true);
    // Nothing unreadable was deleted.
    expect(await keys.get(underUnknown)).toBeDefined();
    expect(await keys.get(damaged)).toBeDefined();

    expect(await rewrapAll(keys, ring)).toMatchObject({ rewrapped: 0, current: 2, unreadable: 2 });
    for (const id of [underOld, underNew, underUnknown, damaged]) await keys.purge(id);
  });

  it("a pass does not resurrect a key the shredder purged between its read and its write", async () => {
    const keys = await createStore();
    const id = newSessionId();
    await keys.put(id, wrappedUnder(oldKey, id));
    const report = await rewrapAll(purgedRightAfterRead(keys), masterKeyRing(newKey, [oldKey]));
    expect(report).toMatchObject({ rewrapped: 0, changed: 1, underPreviousKey: 0 });
    expect(await keys.read(id)).toBeUndefined();
    expect(await keys.sessionIds()).not.toContain(id);
  });
});

describe("the sweep during a rotation", () => {
  it("re-wraps after sweeping, logs the counts and sets the gauge of keys still under a previous key", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: "info" },
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
          done();
        },
      }),
    );
    const log = createInMemoryEventLog();
    const keys = createInMemoryCredentialKeyStore();
    const metrics = createPrometheusMetrics({
      log,
      clock,
      projections: [],
      replica: { size: 0 } as never,
      readModel: {} as never,
    });
    const gauge = () =>
      metrics.registry.getSingleMetricAsString("tessera_credential_keys_under_previous_key");
    metrics.credentialKeysUnderPreviousKey(7); // a stale count the sweep must overwrite
    const config = loadConfig({
      TESSERA_CREDENTIALS_KEY: newKey.toString("base64"),
      TESSERA_CREDENTIALS_PREVIOUS_KEYS: oldKey.toString("base64url"),
    });
    const credentials = createCredentials({
      ...{ config, keys, checkpoints: createInMemoryValidationStore(), log, clock, logger },
      onUnderPreviousKey: metrics.credentialKeysUnderPreviousKey,
    });
    const live = newSessionId();
    const before = createCredentialVault({ keys, masterKey: oldKey, log, clock: { now: () => Date.now() } });
    await appendCreated(log, live, await before.seal(live, { token: "MARKER-R3" }));
    const stranger = newSessionId();
    await appendCreated(log, stranger, await before.seal(stranger, { token: "y" }));
    await keys.put(stranger, wrappedUnder(randomBytes(32), stranger, Date.now()));

    await credentials.sweepOnce();
    const counts = lines.find(
      (line) => line.msg === "credential keys re-wrapped under the current master key",
    );
    expect(counts).toMatchObject({ rewrapped: 1, current: 0, unreadable: 1, underPreviousKey: 0 });
    const warning = lines.find((line) => line.level === 40);
    expect(warning).toMatchObject({ unreadable: 1, sessionIds: [stranger] });
    expect(JSON.stringify(lines)).not.toContain("MARKER-R3");
    expect(await gauge()).toMatch(/^tessera_credential_keys_under_previous_key 0$/m);
    expect((await keys.get(live))?.kid).toBe(keyIdOf(newKey));
    expect(await keys.get(stranger)).toBeDefined();
    await log.close();
  });
});

describe("TESSERA_CREDENTIALS_PREVIOUS_KEYS", () => {
  const current = newKey.toString("base64");
  const load = (previous: string) =>
    loadConfig({ TESSERA_CREDENTIALS_KEY: current, TESSERA_CREDENTIALS_PREVIOUS_KEYS: previous });
  const problemsOf = (previous: string, env: Record<string, string> = {}) => {
    try {
      loadConfig({ TESSERA_CREDENTIALS_KEY: current, TESSERA_CREDENTIALS_PREVIOUS_KEYS: previous, ...env });
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error("loaded");
  };

  it("takes comma-separated keys in either base64 alphabet; unset or blank is none", () => {
    const other = randomBytes(32);
    expect(
      load(` ${oldKey.toString("base64")} , ${other.toString("base64url")},`).credentials.previousKeys,
    ).toEqual([oldKey, other]);
    expect(load("").credentials.previousKeys).toEqual([]);
    expect(loadConfig({}).credentials.previousKeys).toEqual([]);
  });

  it("names the variable and the position of a bad key, never the key", () => {
    const short = randomBytes(16).toString("base64");
    const message = problemsOf(`${oldKey.toString("base64")},${short}`);
    expect(message).toContain("TESSERA_CREDENTIALS_PREVIOUS_KEYS: key 2 of 2 must be 32 bytes");
    expect(message).not.toContain(short);
    expect(message).not.toContain(oldKey.toString("base64"));
    expect(problemsOf("not base64!")).toContain("key 1 of 1");
  });

  it("refuses the current key, a repeat, and previous keys without a current one", () => {
    expect(problemsOf(`${oldKey.toString("base64")},${newKey.toString("base64url")}`)).toContain(
      "key 2 of 2 is TESSERA_CREDENTIALS_KEY itself",
    );
    expect(problemsOf(`${oldKey.toString("base64")},${oldKey.toString("base64url")}`)).toContain(
      "key 2 of 2 repeats an earlier key",
    );
    expect(() => loadConfig({ TESSERA_CREDENTIALS_PREVIOUS_KEYS: oldKey.toString("base64") })).toThrow(
      /TESSERA_CREDENTIALS_PREVIOUS_KEYS: needs TESSERA_CREDENTIALS_KEY/,
    );
  });
});
