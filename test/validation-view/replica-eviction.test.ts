import { expect, it } from "vitest";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import type { ValidationEntry } from "../../src/projections/validation-entry.ts";

const entry = (sessionId: string, expiresAt: number): ValidationEntry => ({
  sessionId,
  userId: "u",
  username: "u",
  kind: "api",
  status: "active",
  endReason: undefined,
  tokenHash: "h".repeat(43),
  refreshGeneration: 0,
  roles: [],
  groups: [],
  scope: [],
  createdAt: 0,
  expiresAt,
  idleTimeoutSeconds: 0,
  lastActivityAt: 0,
  binding: { mode: "off" },
  idpSessionId: undefined,
  position: 1,
});

it("forgets only sessions whose absolute expiry is before the cutoff", () => {
  const replica = createValidationReplica();
  replica.offerSession(entry("old", 1_000));
  replica.offerSession(entry("edge", 2_000));
  replica.offerSession(entry("live", 5_000));
  expect(replica.evictExpiredBefore(2_000)).toBe(1);
  expect(replica.getSession("old")).toBeUndefined();
  expect(replica.getSession("edge")).toBeDefined();
  expect(replica.getSession("live")).toBeDefined();
  expect(replica.size).toBe(2);
});
