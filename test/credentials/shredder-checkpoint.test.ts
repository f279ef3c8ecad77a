import { afterEach, describe, expect, it, vi } from "vitest";
import { CREDENTIAL_SHREDDER, createCredentialShredder } from "../../src/app/credential-shredder.ts";
import type { RecordedEvent, SealedCredentials } from "../../src/domain/events.ts";
import { metadata, newSessionId, sessionCreated } from "../contract/event-fixtures.ts";
import { countingStore } from "../support/counting-checkpoints.ts";

/**
 * The shredder follows the log with the process managers' checkpoint machinery: a run of events with
 * nothing to purge writes its checkpoint once, soon after; a failed batch forgets which sessions it saw
 * created, because the retry may start elsewhere.
 */

const stream = (id: string) => ({ category: "session" as const, id });

function created(position: number, sessionId: string, credentials?: SealedCredentials): RecordedEvent {
  const event = sessionCreated(sessionId);
  event.data.credentials = credentials;
  return { ...event, metadata: metadata(), stream: stream(sessionId), position } as RecordedEvent;
}

function invalidated(position: number, sessionId: string): RecordedEvent {
  return {
    type: "SessionInvalidated",
    version: 1,
    data: { sessionId, userId: "user-1", reason: "logout", invalidatedAt: new Date().toISOString() },
    metadata: metadata(),
    stream: stream(sessionId),
    position,
  } as RecordedEvent;
}

describe("credential shredder checkpoints", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("defers the checkpoint of a run with nothing to purge, and writes a purge's at once", async () => {
    const { store, checkpoints, calls } = countingStore();
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    const destroyed: string[] = [];
    const shredder = createCredentialShredder({
      destroy: async (sessionId) => {
        destroyed.push(sessionId);
        return true;
      },
      hasKey: async () => true,
      checkpoints,
    });
    await shredder.checkpoint();
    // Created without credentials, then ended: nothing to purge, not even a lookup.
    for (let position = 1; position <= 50; position += 2) {
      const id = newSessionId();
      await shredder.applyBatch([created(position, id)]);
      await shredder.applyBatch([invalidated(position + 1, id)]);
    }
    expect(calls).toEqual({ get: 1, set: 0 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await store.getCheckpoint(CREDENTIAL_SHREDDER)).toBe(50);
    expect(calls.set).toBe(1);
    expect(destroyed).toEqual([]);

    const sealed = newSessionId();
    await shredder.applyBatch([created(51, sealed, {} as SealedCredentials), invalidated(52, sealed)]);
    expect(destroyed).toEqual([sealed]);
    expect(await store.getCheckpoint(CREDENTIAL_SHREDDER)).toBe(52);
  });

  it("forgets what a failed batch taught it", async () => {
    const { store, checkpoints } = countingStore();
    const lookups: string[] = [];
    let fail = true;
    const shredder = createCredentialShredder({
      destroy: async () => {
        if (fail) throw new Error("KV away");
        return true;
      },
      hasKey: async (sessionId) => {
        lookups.push(sessionId);
        return true;
      },
      checkpoints,
    });
    await shredder.checkpoint();
    const plain = newSessionId();
    const early = newSessionId();
    await expect(shredder.applyBatch([created(1, plain), invalidated(2, early)])).rejects.toThrow("KV away");
    expect(await store.getCheckpoint(CREDENTIAL_SHREDDER)).toBe(0);
    fail = false;
    // Had it remembered `plain` as created without credentials, it would not ask the key store.
    await shredder.applyBatch([invalidated(3, plain)]);
    expect(lookups).toEqual([early, plain]);
    expect(await store.getCheckpoint(CREDENTIAL_SHREDDER)).toBe(3);
  });
});
