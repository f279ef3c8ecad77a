import { describe, expect, it } from "vitest";
import { foldAsOf } from "../../src/app/as-of-query.ts";
import type { DomainEvent, RecordedEvent } from "../../src/domain/events.ts";
import { type AuditRow, auditRowOf, ownerLookupFor, reasonOf } from "../../src/projections/audit-row.ts";
import { at, eventLog, iso } from "../postgres/fixtures.ts";

/** The pure halves: one audit row per event, and the fold that answers `as_of` from such rows. */

describe("auditRowOf", () => {
  it("records who, what, when, from where and why, without token hashes", () => {
    const log = eventLog();
    const created = log.created({ userId: "alice", atS: 0 });
    const row = auditRowOf(created, undefined);
    expect(row).toMatchObject({
      position: 1,
      occurredAt: new Date(at(0)),
      type: "SessionCreated",
      sessionId: created.data.sessionId,
      userId: "alice",
      actorKind: "user",
      actorId: "tester",
      source: "rest",
      reason: null,
    });
    expect(row.data).not.toHaveProperty("tokenHash");
    expect(row.data).not.toHaveProperty("refreshTokenHash");
    expect(row.data).toMatchObject({ userId: "alice", roles: created.data.roles });
    expect(row.metadata).toMatchObject({
      eventId: created.metadata.eventId,
      commandId: created.metadata.commandId,
    });
  });

  it("takes the user of renewals and touches from the session's owner", () => {
    const log = eventLog();
    const created = log.created({ userId: "bob" });
    const touched = log.touched(created.data.sessionId, 30);
    expect(ownerLookupFor(created)).toBeUndefined();
    expect(ownerLookupFor(touched)).toBe(created.data.sessionId);
    expect(auditRowOf(touched, "bob").userId).toBe("bob");
    expect(auditRowOf(touched, undefined).userId).toBeNull();
  });

  it("gives every ending its reason in the end-reason vocabulary", () => {
    const log = eventLog();
    const id = log.created().data.sessionId;
    expect(reasonOf(log.expired(id, "u", 10, "idle"))).toBe("expired_idle");
    expect(reasonOf(log.expired(id, "u", 10, "absolute"))).toBe("expired_absolute");
    expect(reasonOf(log.invalidated(id, "u", 10, "logout"))).toBe("logout");
    expect(reasonOf(log.recycled(id, "u", 10, "claims_changed"))).toBe("claims_changed");
    expect(reasonOf(log.renewed(id, 10, 100))).toBeNull();
  });
});

/** Rows as the audit model holds them, built from recorded events (what the projection writes). */
function rows(events: RecordedEvent[]): AuditRow[] {
  const owners = new Map<string, string>();
  for (const e of events) if (e.type === "SessionCreated") owners.set(e.data.sessionId, e.data.userId);
  return events.map((e) => {
    const lookup = ownerLookupFor(e);
    return auditRowOf(e, lookup === undefined ? undefined : owners.get(lookup));
  });
}

function userEvent(event: DomainEvent, position: number, atMs: number): RecordedEvent {
  return {
    ...event,
    position,
    stream: { category: "user", id: "alice" },
    metadata: {
      eventId: `e${position}`,
      commandId: `c${position}`,
      correlationId: `c${position}`,
      causationId: `c${position}`,
      occurredAt: iso(atMs),
      actor: { kind: "admin", id: "a" },
      source: "rest",
    },
  } as RecordedEvent;
}

describe("foldAsOf", () => {
  it("folds sessions, deadlines, claims changes and revocations (with their exception) up to the instant", () => {
    const log = eventLog();
    const s1 = log.created({ userId: "alice", atS: 0, ttlS: 3_600 });
    const s2 = log.created({ userId: "alice", atS: 10, ttlS: 3_600, idleS: 20 });
    const touched = log.touched(s2.data.sessionId, 25);
    const s3 = log.created({ userId: "alice", atS: 50, ttlS: 3_600, roles: ["admin"], groups: ["ops"] });
    const claims = userEvent(
      {
        type: "UserClaimsChanged",
        version: 1,
        data: {
          userId: "alice",
          before: { roles: ["user"], groups: ["staff"] },
          after: { roles: ["admin"], groups: ["ops"] },
          changedAt: iso(at(60)),
        },
      },
      log.position + 1,
      at(60),
    );
    // The fixture numbers only its own events; the claims change took the next position, so s4 moves up one.
    const s4 = { ...log.created({ userId: "alice", atS: 80, roles: ["admin"], groups: ["ops"] }) };
    s4.position = log.position + 1;
    const revoked = userEvent(
      {
        type: "UserSessionsRevoked",
        version: 1,
        data: {
          userId: "alice",
          revokedBefore: iso(at(120)),
          reason: "revoke_all",
          exceptSessionId: s3.data.sessionId,
        },
      },
      log.position + 2,
      at(120),
    );
    const all = rows([s1, s2, touched, s3, claims, s4, revoked]);
    const upTo = (seconds: number) => {
      const instant = at(seconds);
      const { sessions, claims: c } = foldAsOf(
        all.filter((r) => r.occurredAt.getTime() <= instant),
        instant,
      );
      return { ids: sessions.map((s) => s.sessionId), claims: c };
    };
    const [id1, id2, id3, id4] = [s1.data.sessionId, s2.data.sessionId, s3.data.sessionId, s4.data.sessionId];
    expect(upTo(5)).toEqual({ ids: [id1], claims: undefined });
    // s2 (idle timeout 20 s) would have idled out at +30 s; its touch at +25 s moved that to +45 s.
    expect(upTo(35).ids).toEqual([id1, id2]);
    expect(upTo(45).ids).toEqual([id1]);
    expect(upTo(59).ids).toEqual([id1, id3]);
    // From the claims change on, a session holding other claims is refused (recycled), the others stay.
    expect(upTo(60)).toEqual({ ids: [id3], claims: { roles: ["admin"], groups: ["ops"] } });
    expect(upTo(119).ids).toEqual([id3, id4]);
    // The revoke-all at +120 s spares s3, the session it was made from.
    expect(upTo(120).ids).toEqual([id3]);
    expect(upTo(4_000).ids).toEqual([]);
  });
});
