import { describe, expect, it } from "vitest";
import type { SessionRow } from "../../src/app/ports.ts";
import type { RecordedEvent, SessionEvent } from "../../src/domain/events.ts";
import { evolveSessionRow } from "../../src/projections/session-row.ts";
import { at, eventLog } from "./fixtures.ts";

function fold(events: RecordedEvent<SessionEvent>[], start?: SessionRow): SessionRow | undefined {
  return events.reduce<SessionRow | undefined>((row, event) => evolveSessionRow(row, event), start);
}

describe("evolveSessionRow", () => {
  it("creates an active row from SessionCreated with every field of the session view", () => {
    const log = eventLog();
    const created = log.created({ userId: "u1", atS: 10, ttlS: 3600, idleS: 600 });
    const row = evolveSessionRow(undefined, created);
    expect(row).toEqual({
      id: created.data.sessionId,
      userId: "u1",
      username: "u1-name",
      kind: "web",
      status: "active",
      roles: ["user"],
      groups: ["staff"],
      client: "test-client",
      ipAddress: "192.0.2.1",
      userAgent: "vitest",
      createdAt: new Date(at(10)),
      lastActivityAt: new Date(at(10)),
      expiresAt: new Date(at(3610)),
      idleExpiresAt: new Date(at(610)),
      endedAt: null,
      endReason: null,
      metadata: { purpose: "test", nested: { n: 1 } },
      lastPosition: 1,
    } satisfies SessionRow);
  });

  it("has no idle deadline when the idle timeout is 0, and null for absent optional fields", () => {
    const log = eventLog();
    const row = evolveSessionRow(
      undefined,
      log.created({ idleS: 0, client: undefined, ipAddress: undefined, userAgent: undefined }),
    );
    expect(row?.idleExpiresAt).toBeNull();
    expect(row?.client).toBeNull();
    expect(row?.ipAddress).toBeNull();
    expect(row?.userAgent).toBeNull();
  });

  it("ignores events for a session it never saw created", () => {
    const log = eventLog();
    expect(
      evolveSessionRow(undefined, log.touched("01943a5e-7c00-7a3b-8c1d-2e3f4a5b6c7d", 5)),
    ).toBeUndefined();
  });

  it("moves last activity and the idle deadline on touch, keeping the creation ip and user agent", () => {
    const log = eventLog();
    const created = log.created({ idleS: 600 });
    const id = created.data.sessionId;
    const row = fold([created, log.touched(id, 100, { ipAddress: "198.51.100.7", userAgent: "other" })]);
    expect(row?.lastActivityAt).toEqual(new Date(at(100)));
    expect(row?.idleExpiresAt).toEqual(new Date(at(700)));
    expect(row?.ipAddress).toBe("192.0.2.1");
    expect(row?.userAgent).toBe("vitest");
    expect(row?.lastPosition).toBe(2);
  });

  it("never moves activity backwards", () => {
    const log = eventLog();
    const created = log.created({ idleS: 600 });
    const id = created.data.sessionId;
    const row = fold([created, log.touched(id, 300), log.touched(id, 200)]);
    expect(row?.lastActivityAt).toEqual(new Date(at(300)));
    expect(row?.idleExpiresAt).toEqual(new Date(at(900)));
    expect(row?.lastPosition).toBe(3);
  });

  it("renews: new expiry and activity", () => {
    const log = eventLog();
    const created = log.created({ idleS: 600 });
    const id = created.data.sessionId;
    const row = fold([created, log.renewed(id, 500, 7200)]);
    expect(row?.expiresAt).toEqual(new Date(at(7200)));
    expect(row?.lastActivityAt).toEqual(new Date(at(500)));
    expect(row?.idleExpiresAt).toEqual(new Date(at(1100)));
  });

  it("token rotation counts as activity", () => {
    const log = eventLog();
    const created = log.created();
    const row = fold([created, log.rotated(created.data.sessionId, 42)]);
    expect(row?.lastActivityAt).toEqual(new Date(at(42)));
    expect(row?.idleExpiresAt).toBeNull();
  });

  it.each([
    ["invalidated", "logout"],
    ["recycled", "claims_changed"],
    ["expired", "expired_idle"],
    ["expired", "expired_absolute"],
  ] as const)("ends with status %s and reason %s", (status, reason) => {
    const log = eventLog();
    const created = log.created({ userId: "u1", idleS: 600 });
    const id = created.data.sessionId;
    const end =
      status === "invalidated"
        ? log.invalidated(id, "u1", 50, "logout")
        : status === "recycled"
          ? log.recycled(id, "u1", 50, "claims_changed")
          : log.expired(id, "u1", 50, reason === "expired_idle" ? "idle" : "absolute");
    const row = fold([created, end]);
    expect(row?.status).toBe(status);
    expect(row?.endReason).toBe(reason);
    expect(row?.endedAt).toEqual(new Date(at(50)));
    expect(row?.lastPosition).toBe(2);
  });

  it("after the end, later events change nothing but the position", () => {
    const log = eventLog();
    const created = log.created({ userId: "u1" });
    const id = created.data.sessionId;
    const ended = fold([created, log.invalidated(id, "u1", 50)]);
    const after = fold([log.touched(id, 60), log.renewed(id, 70, 9000), log.expired(id, "u1", 80)], ended);
    expect(after).toEqual({ ...ended, lastPosition: 5 });
  });

  it("ignores events at or below the row's position and returns the same row", () => {
    const log = eventLog();
    const created = log.created();
    const id = created.data.sessionId;
    const touched = log.touched(id, 100);
    const row = fold([created, touched]);
    expect(evolveSessionRow(row, touched)).toBe(row);
    expect(evolveSessionRow(row, created)).toBe(row);
    // Replaying the whole history over the final row is a no-op.
    expect(fold([created, touched], row)).toBe(row);
  });
});
