import { z } from "zod";
import type {
  DomainEvent,
  DomainEventType,
  EventMetadata,
  RecordedActor,
  RecordedSource,
  SessionCreatedData,
  SessionExpiredData,
  SessionInvalidatedData,
  SessionRecycledData,
  SessionRenewedData,
  SessionTokensRotatedData,
  SessionTouchedData,
  UserClaimsChangedData,
  UserSessionsRevokedData,
} from "../../domain/events.ts";

/**
 * Zod schemas of the current version of every event. The compile-time checks at the bottom keep them
 * equal to the types in src/domain/events.ts: a field added there without a schema here would otherwise
 * be stripped silently on write.
 */

// Offsets are allowed so an event written by another tool is not refused for using "+00:00".
const instant = z.iso.datetime({ offset: true });
const id = z.string().min(1);
const strings = z.array(z.string());

// Where a newer version may write a value this one does not know (a transport, an actor kind added since),
// a reader takes any short lowercase token and keeps it as text (RecordedSource / RecordedActor in
// src/domain/events.ts). A refinement, not .regex(), so the codec's compiled fast path (fast-check.ts)
// keeps covering metadata.
const TOKEN = /^[a-z][a-z0-9_-]{0,31}$/;
const token = () => z.string().refine((value) => TOKEN.test(value), "must be a lowercase token");
const actorKind = token() as unknown as z.ZodType<RecordedActor["kind"]>;
const recordedSource = token() as unknown as z.ZodType<RecordedSource>;
const invalidationReason = z.enum([
  "logout",
  "revoked",
  "revoked_by_admin",
  "revoke_all",
  "refresh_token_reuse",
  "evicted",
  "user_disabled",
  "password_changed",
  "backchannel_logout",
  "idp_revoked",
]);
const claims = z.object({ roles: strings, groups: strings });

export const eventMetadataSchema = z.object({
  eventId: id,
  commandId: id,
  correlationId: id,
  causationId: id,
  occurredAt: instant,
  actor: z.object({ kind: actorKind, id: z.string() }),
  source: recordedSource,
  ip: z.string().optional(),
  userAgent: z.string().optional(),
});

const sessionCreatedData = z.object({
  sessionId: id,
  userId: id,
  username: z.string(),
  kind: z.enum(["web", "api", "mcp"]),
  roles: strings,
  groups: strings,
  scope: strings,
  tokenHash: z.string().min(1),
  refreshTokenHash: z.string().min(1).optional(),
  createdAt: instant,
  expiresAt: instant,
  maxExpiresAt: instant,
  idleTimeoutSeconds: z.number().int().nonnegative(),
  client: z.string().optional(),
  ipAddress: z.string().optional(),
  userAgent: z.string().optional(),
  binding: z.object({
    mode: z.enum(["off", "ua", "ip", "ip+ua"]),
    ip: z.string().optional(),
    userAgent: z.string().optional(),
  }),
  metadata: z.record(z.string(), z.unknown()),
  idpSessionId: z.string().optional(),
  credentials: z
    .object({
      alg: z.literal("A256GCM"),
      iv: z.string().min(1),
      ciphertext: z.string(),
      tag: z.string().min(1),
    })
    .optional(),
});

const sessionRenewedData = z.object({
  sessionId: id,
  previousExpiresAt: instant,
  expiresAt: instant,
  renewedAt: instant,
});

const sessionTouchedData = z.object({
  sessionId: id,
  at: instant,
  ipAddress: z.string().optional(),
  userAgent: z.string().optional(),
});

const sessionTokensRotatedData = z.object({
  sessionId: id,
  refreshGeneration: z.number().int().nonnegative(),
  previousRefreshTokenHash: z.string().min(1),
  refreshTokenHash: z.string().min(1),
  rotatedAt: instant,
});

const sessionRecycledData = z.object({
  sessionId: id,
  userId: id,
  reason: z.enum(["claims_changed", "recycled"]),
  causeEventId: z.string().optional(),
  recycledAt: instant,
});

const sessionInvalidatedData = z.object({
  sessionId: id,
  userId: id,
  reason: invalidationReason,
  invalidatedAt: instant,
});

const sessionExpiredData = z.object({
  sessionId: id,
  userId: id,
  cause: z.enum(["absolute", "idle"]),
  deadline: instant,
  expiredAt: instant,
  tick: z.number().int().optional(),
});

const userClaimsChangedData = z.object({
  userId: id,
  before: claims,
  after: claims,
  changedAt: instant,
});

const userSessionsRevokedData = z.object({
  userId: id,
  revokedBefore: instant,
  reason: invalidationReason,
  exceptSessionId: z.string().optional(),
});

const event = <T extends DomainEventType, D extends z.ZodType>(type: T, data: D) =>
  z.object({ type: z.literal(type), version: z.literal(1), data });

/** The current schema of each event type, looked up by `type` after upcasting. */
export const eventSchemas = {
  SessionCreated: event("SessionCreated", sessionCreatedData),
  SessionRenewed: event("SessionRenewed", sessionRenewedData),
  SessionTouched: event("SessionTouched", sessionTouchedData),
  SessionTokensRotated: event("SessionTokensRotated", sessionTokensRotatedData),
  SessionRecycled: event("SessionRecycled", sessionRecycledData),
  SessionInvalidated: event("SessionInvalidated", sessionInvalidatedData),
  SessionExpired: event("SessionExpired", sessionExpiredData),
  UserClaimsChanged: event("UserClaimsChanged", userClaimsChangedData),
  UserSessionsRevoked: event("UserSessionsRevoked", userSessionsRevokedData),
} as const;

/** The version the codec writes and the domain reads, per event type. */
export const CURRENT_EVENT_VERSION = 1;

// Compile-time: schemas and domain types must agree exactly, in both directions.
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
type Schemas = typeof eventSchemas;
export type _SchemaChecks = [
  Assert<Equals<z.output<typeof eventMetadataSchema>, EventMetadata>>,
  Assert<Equals<z.output<typeof sessionCreatedData>, SessionCreatedData>>,
  Assert<Equals<z.output<typeof sessionRenewedData>, SessionRenewedData>>,
  Assert<Equals<z.output<typeof sessionTouchedData>, SessionTouchedData>>,
  Assert<Equals<z.output<typeof sessionTokensRotatedData>, SessionTokensRotatedData>>,
  Assert<Equals<z.output<typeof sessionRecycledData>, SessionRecycledData>>,
  Assert<Equals<z.output<typeof sessionInvalidatedData>, SessionInvalidatedData>>,
  Assert<Equals<z.output<typeof sessionExpiredData>, SessionExpiredData>>,
  Assert<Equals<z.output<typeof userClaimsChangedData>, UserClaimsChangedData>>,
  Assert<Equals<z.output<typeof userSessionsRevokedData>, UserSessionsRevokedData>>,
  Assert<Equals<keyof Schemas, DomainEventType>>,
  Assert<Equals<z.output<Schemas[DomainEventType]>, DomainEvent>>,
];
