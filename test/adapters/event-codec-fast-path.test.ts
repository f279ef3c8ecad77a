import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  decodeEvent,
  EventDecodeError,
  EventEncodeError,
  encodeEvent,
  fastCheckedEventTypes,
} from "../../src/adapters/codec/event-codec.ts";
import { eventMetadataSchema, eventSchemas } from "../../src/adapters/codec/event-schemas.ts";
import { compileFastCheck, type FastCheck } from "../../src/adapters/codec/fast-check.ts";
import type { DomainEvent, EventMetadata, SessionEvent, UserEvent } from "../../src/domain/events.ts";
import type { SessionCommand } from "../../src/domain/session-commands.ts";
import { decide } from "../../src/domain/session-decider.ts";
import { evolve, initialSessionState } from "../../src/domain/session-state.ts";
import { decideUser, evolveUser, initialUserState, type UserCommand } from "../../src/domain/user-decider.ts";
import { metadata, newSessionId, sessionCreated, sessionTouched } from "../contract/event-fixtures.ts";
import { cmd, T0 } from "../domain/fixtures.ts";

/**
 * The codec's fast path (a predicate compiled from the zod schemas) may only say yes where zod would
 * accept the value AND return it unchanged; for everything else zod decides. These properties check that
 * implication against zod itself, and that the events the deciders produce do take the fast path.
 */

type Envelope = DomainEvent & { metadata: EventMetadata };
const envelopeSchemas = Object.fromEntries(
  Object.values(eventSchemas).map((schema) => [
    schema.shape.type.value,
    schema.extend({ metadata: eventMetadataSchema }),
  ]),
) as Record<string, z.ZodType>;
const envelopeChecks = Object.fromEntries(
  Object.entries(envelopeSchemas).map(([type, schema]) => [type, compileFastCheck(schema)]),
) as Record<string, FastCheck | undefined>;

const envelope = (event: DomainEvent, meta: EventMetadata = metadata()): Envelope =>
  ({ type: event.type, version: event.version, data: event.data, metadata: meta }) as Envelope;
const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** The implication under test: fast yes ⇒ zod yes, with an output equal to the input. */
function expectSoundFor(schema: z.ZodType, check: FastCheck, value: unknown): boolean {
  if (!check(value)) return false;
  const parsed = schema.safeParse(value);
  expect(parsed.success).toBe(true);
  expect(parsed.data).toStrictEqual(value);
  return true;
}

const iso = (ms: number) => new Date(ms).toISOString();
const sessionId = newSessionId();
const fixtures: Envelope[] = [
  envelope(sessionCreated(sessionId)),
  envelope(
    {
      ...sessionCreated(sessionId),
      data: {
        ...sessionCreated(sessionId).data,
        refreshTokenHash: "r",
        client: "c",
        userAgent: "ua",
        binding: { mode: "ip+ua", ip: "192.0.2.1", userAgent: "ua" },
        idpSessionId: "sid",
        idleTimeoutSeconds: 600,
      },
    },
    metadata({ ip: "192.0.2.1", userAgent: "ua/1" }),
  ),
  envelope(sessionTouched(sessionId, 5)),
  envelope({
    type: "SessionExpired",
    version: 1,
    data: { sessionId, userId: "u", cause: "idle", deadline: iso(T0), expiredAt: iso(T0 + 5), tick: 17 },
  }),
  envelope({
    type: "SessionTokensRotated",
    version: 1,
    data: {
      sessionId,
      refreshGeneration: 2,
      previousRefreshTokenHash: "a",
      refreshTokenHash: "b",
      rotatedAt: iso(T0),
    },
  }),
  envelope({
    type: "UserClaimsChanged",
    version: 1,
    data: {
      userId: "u",
      before: { roles: [], groups: [] },
      after: { roles: ["admin"], groups: ["g"] },
      changedAt: iso(T0),
    },
  }),
];

/** Every path into a JSON-ish value: where a mutation can land. */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) out.push(...paths(item, [...prefix, i]));
  } else if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) out.push(...paths(item, [...prefix, key]));
  }
  return out;
}

function isObjectAt(root: unknown, path: (string | number)[]): boolean {
  let value = root;
  for (const key of path) value = (value as Record<string | number, unknown>)[key];
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function setAt(root: unknown, path: (string | number)[], value: unknown, remove: boolean): unknown {
  if (path.length === 0) return value;
  const copy = clone(root) as Record<string | number, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path.at(-1) as string | number;
  if (remove) delete parent[last];
  else parent[last] = value;
  return copy;
}

class Thing {
  sessionId = "x";
}
const awkward = fc.constantFrom<unknown>(
  undefined,
  null,
  Number.NaN,
  -0,
  1.5,
  -1,
  2 ** 60,
  Number.POSITIVE_INFINITY,
  "",
  "2025-01-01T00:00:00Z",
  "2025-02-30T00:00:00.000Z",
  "2025-01-01T24:00:00.000Z",
  "2025-01-01T00:00:00.000+01:00",
  "2025-01-01",
  "12:30:00",
  "01943a5e-7c00-7a3b-8c1d-2e3f4a5b6c7d",
  "01943a5e-7c00-0a3b-0c1d-2e3f4a5b6c7d",
  "web",
  "ip+ua",
  "SessionCreated",
  [],
  [""],
  [1],
  {},
  new Date(T0),
  new Thing(),
  Object.create(null),
  JSON.parse('{"__proto__": {"x": 1}}'),
  { [Symbol("s")]: 1 },
);
const replacement = fc.oneof(awkward, fc.jsonValue({ maxDepth: 2 }));

describe("event codec fast path", () => {
  it("has a compiled check for every event type", () => {
    expect([...fastCheckedEventTypes].sort()).toEqual(Object.keys(eventSchemas).sort());
    for (const fixture of fixtures) expect(envelopeChecks[fixture.type]?.(fixture)).toBe(true);
  });

  it("never accepts what zod refuses or would change (mutated envelopes)", () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...fixtures),
        fc.nat(),
        replacement,
        fc.constantFrom("set", "remove", "add"),
        (fixture, pick, value, how) => {
          // "add" puts an extra key into an object; the others replace or remove any value.
          const all = paths(fixture).filter((p) => how !== "add" || isObjectAt(fixture, p));
          const path = all[pick % all.length] as (string | number)[];
          const mutated =
            how === "add"
              ? setAt(fixture, [...path, "extra"], value, false)
              : setAt(fixture, path, value, how === "remove");
          const schema = envelopeSchemas[fixture.type] as z.ZodType;
          if (expectSoundFor(schema, envelopeChecks[fixture.type] as FastCheck, mutated)) accepted++;
          else refused++;
        },
      ),
      { numRuns: 3000 },
    );
    // Both outcomes occur, so the property is not vacuous either way.
    expect(accepted).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });

  it("never accepts what zod refuses or would change (schema features, arbitrary values)", () => {
    const schemas: z.ZodType[] = [
      z.string(),
      z.string().min(3),
      z.string().max(2),
      z.iso.datetime({ offset: true }),
      z.iso.datetime(),
      z.iso.date(),
      z.iso.time(),
      z.uuid(),
      z.guid(),
      z.number(),
      z.number().int().nonnegative(),
      z.number().gt(1).lte(5),
      z.literal(1),
      z.literal("a"),
      z.enum(["a", "b"]),
      z.array(z.string()),
      z.array(z.number().int()).min(1),
      z.string().optional(),
      z.record(z.string(), z.unknown()),
      z.record(z.string(), z.number()),
      z.object({ a: z.string(), b: z.number().optional(), c: z.object({ d: z.enum(["x"]) }) }),
      z.unknown(),
      // The request-body features (quick-validator.ts compiles REST bodies with the same compiler).
      z.string().nullable(),
      z.strictObject({ a: z.string().optional(), b: z.number().int().optional() }).nullish(),
      z.record(z.string().max(3), z.unknown()),
      z.string().refine((s) => s.length > 1),
      z.record(z.string(), z.unknown()).refine((r) => Object.keys(r).length < 3),
      z.string().refine(() => {
        throw new Error("a refinement that throws is zod's to report");
      }),
    ];
    for (const schema of schemas) {
      const check = compileFastCheck(schema);
      expect(check, String(schema.def.type)).toBeDefined();
      fc.assert(
        fc.property(fc.oneof(awkward, fc.anything({ withNullPrototype: true })), (value) => {
          expectSoundFor(schema, check as FastCheck, value);
        }),
        { numRuns: 300 },
      );
    }
  });

  it("compiles nothing for features it does not know (zod then decides everything)", () => {
    for (const schema of [
      z.email(),
      z.url(),
      z.string().regex(/a/),
      z.string().transform((s) => s.length),
      z.string().default("x"),
      z.number().default(1).optional(),
      z.object({ a: z.string() }).passthrough(),
      z.object({ a: z.string() }).catchall(z.number()),
      z.string().refine((s) => s.length > 1, { when: () => true }),
      z.record(z.string().regex(/a/), z.unknown()),
      z.coerce.number(),
      z.union([z.string(), z.number()]),
      z.object({ nested: z.array(z.string().trim()) }),
    ] as z.ZodType[]) {
      expect(compileFastCheck(schema)).toBeUndefined();
    }
  });

  it("leaves stripping and refusing to zod: unknown keys, a __proto__ key, invalid values", () => {
    const event = sessionCreated(sessionId);
    const withProto = {
      ...event,
      data: { ...event.data, metadata: JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') },
    } as DomainEvent;
    const written = JSON.parse(new TextDecoder().decode(encodeEvent(withProto, metadata())));
    expect(written.data.metadata).toEqual({ ok: 1 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const stored = { ...envelope(event), extra: true, data: { ...event.data, stray: 1 } };
    expect(decodeEvent(bytes(stored)).event).toStrictEqual(event);
    const bad = { ...envelope(event), data: { ...event.data, createdAt: "2025-13-01T00:00:00.000Z" } };
    expect(() => decodeEvent(bytes(bad))).toThrow(EventDecodeError);
    expect(() => encodeEvent(bad as DomainEvent, metadata())).toThrow(EventEncodeError);
  });

  it("every event the session decider produces takes the fast path", () => {
    const meta = metadata();
    let events = 0;
    const stepCommand = fc.oneof(
      fc.integer({ min: 0, max: 3600 }).map((ttl) => (now: number) => cmd.renew(now, ttl)),
      fc.integer({ min: 0, max: 300 }).map((interval) => (now: number) => cmd.touch(now, interval)),
      fc
        .constantFrom("refresh-hash-1", "refresh-hash-2", "other")
        .map((presented) => (now: number) => cmd.rotate(now, presented, `next-${now}`)),
      fc
        .constantFrom("claims_changed" as const, "recycled" as const)
        .map((reason) => (now: number) => cmd.recycle(now, reason, "cause")),
      fc
        .constantFrom("logout" as const, "revoked_by_admin" as const)
        .map((reason) => (now: number) => cmd.invalidate(now, reason)),
      fc.option(fc.nat(), { nil: undefined }).map((tick) => (now: number) => cmd.expire(now, tick)),
    );
    fc.assert(
      fc.property(
        fc.record({ idleTimeoutSeconds: fc.constantFrom(0, 600), refresh: fc.boolean() }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 7200 }), stepCommand), { maxLength: 25 }),
        (policy, steps) => {
          let state = initialSessionState();
          let now = T0;
          const commands: SessionCommand[] = [
            cmd.create(now, {
              idleTimeoutSeconds: policy.idleTimeoutSeconds,
              refreshTokenHash: policy.refresh ? "refresh-hash-1" : undefined,
            }),
            ...steps.map(([delta, make]) => {
              now += delta * 1000;
              return make(now);
            }),
          ];
          for (const command of commands) {
            let produced: SessionEvent[] = [];
            try {
              produced = decide(command, state);
            } catch {
              continue;
            }
            for (const event of produced) {
              events++;
              expect(envelopeChecks[event.type]?.(envelope(event, meta))).toBe(true);
              state = evolve(state, event);
            }
          }
        },
      ),
      { numRuns: 500 },
    );
    expect(events).toBeGreaterThan(600);
  });

  it("every event the user decider produces takes the fast path", () => {
    const commands: UserCommand[] = [
      { type: "ChangeUserClaims", now: T0, data: { userId: "u", after: { roles: ["b", "a"], groups: [] } } },
      { type: "ChangeUserClaims", now: T0 + 1, data: { userId: "u", after: { roles: [], groups: ["g"] } } },
      { type: "RevokeUserSessions", now: T0 + 2, data: { userId: "u", reason: "revoke_all" } },
      {
        type: "RevokeUserSessions",
        now: T0 + 3,
        data: { userId: "u", reason: "password_changed", exceptSessionId: sessionId },
      },
    ];
    let state = initialUserState();
    const produced: UserEvent[] = [];
    for (const command of commands) {
      for (const event of decideUser(command, state)) {
        produced.push(event);
        state = evolveUser(state, event);
      }
    }
    expect(produced).toHaveLength(4);
    for (const event of produced) expect(envelopeChecks[event.type]?.(envelope(event))).toBe(true);
  });
});
