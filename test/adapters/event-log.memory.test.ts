import { describe, expect, it } from "vitest";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { sessionStream } from "../../src/domain/events.ts";
import { VersionConflictError } from "../../src/domain/ports.ts";
import { metadata, newSessionId, sessionCreated, sessionTouched } from "../contract/event-fixtures.ts";
import { describeEventLogContract } from "../contract/event-log-contract.ts";

describeEventLogContract("in-memory", async () => {
  const log = createInMemoryEventLog();
  return { log, cleanup: () => log.close() };
});

describe("in-memory event log", () => {
  it("forgets a msg id once the duplicate window has passed", async () => {
    let now = 1_000_000;
    const log = createInMemoryEventLog({ duplicateWindowMs: 120_000, clock: { now: () => now } });
    const stream = sessionStream(newSessionId());
    const created = sessionCreated(stream.id);
    await log.append(stream, created, metadata(), { expectedVersion: 0, messageId: "m1" });

    now += 119_999;
    expect(await log.append(stream, created, metadata(), { expectedVersion: 0, messageId: "m1" })).toEqual({
      position: 1,
      duplicate: true,
    });

    now += 1;
    // Outside the window the id is new again, so the (stale) expectation is checked and fails.
    await expect(
      log.append(stream, created, metadata(), { expectedVersion: 0, messageId: "m1" }),
    ).rejects.toBeInstanceOf(VersionConflictError);
    expect(
      await log.append(stream, sessionTouched(stream.id, 1), metadata(), {
        expectedVersion: 1,
        messageId: "m1",
      }),
    ).toEqual({ position: 2, duplicate: false });
    await log.close();
  });

  it("refuses every call once closed", async () => {
    const log = createInMemoryEventLog();
    await log.close();
    const stream = sessionStream(newSessionId());
    await expect(
      log.append(stream, sessionCreated(stream.id), metadata(), { expectedVersion: 0, messageId: "m" }),
    ).rejects.toThrow(/closed/);
    await expect(log.lastPosition()).rejects.toThrow(/closed/);
  });

  it("returns copies: changing a read event does not change the log", async () => {
    const log = createInMemoryEventLog();
    const stream = sessionStream(newSessionId());
    await log.append(stream, sessionCreated(stream.id), metadata(), { expectedVersion: 0, messageId: "m" });
    const first = await log.readAt(1);
    (first!.data as { roles: string[] }).roles.push("admin");
    expect((await log.readAt(1))?.data).toMatchObject({ roles: ["user"] });
    await log.close();
  });
});
