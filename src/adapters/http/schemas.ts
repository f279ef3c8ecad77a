import { z } from "zod";
import type { SessionRow } from "../../app/ports.ts";
import { type ExistingSession, idleDeadline } from "../../domain/session-state.ts";
import { UNSTORABLE_TEXT_MESSAGE } from "../../domain/storable-text.ts";
import type { ValidationEntry } from "../../projections/validation-entry.ts";
import { credentialsSchema } from "./credentials-body.ts";
import { isStorableJson, nestsAtMost, storableText } from "./storable-text.ts";

/** Request and response shapes of the REST API (snake_case JSON). The OpenAPI document is generated from these. */

const MAX_METADATA_BYTES = 8 * 1024;
const MAX_METADATA_DEPTH = 16;

// The depth check comes first and the others only look at values that passed it: JSON.stringify of a
// deeply nested value (a 64 KiB body holds ~30,000 levels) overflows the stack.
export const metadataSchema = z
  // Keys are checked with the values (isStorableJson): a refined key type would cost the fast path.
  .record(z.string().max(128), z.unknown())
  .refine((value) => nestsAtMost(value, MAX_METADATA_DEPTH), {
    message: `metadata must nest at most ${MAX_METADATA_DEPTH} levels deep`,
  })
  .refine((value) => !nestsAtMost(value, MAX_METADATA_DEPTH) || isStorableJson(value), {
    message: `metadata ${UNSTORABLE_TEXT_MESSAGE}`,
  })
  .refine(
    (value) => !nestsAtMost(value, MAX_METADATA_DEPTH) || JSON.stringify(value).length <= MAX_METADATA_BYTES,
    { message: `metadata must serialise to at most ${MAX_METADATA_BYTES} bytes` },
  );

/** A user id as the API accepts it, in a body, a query or a path. */
export const userIdText = storableText({ min: 1, max: 256 });

const nameList = z.array(storableText({ min: 1, max: 128 })).max(64);
const ttl = z.number().int().min(1).max(31_536_000);

export const createSessionBody = z
  .strictObject({
    user_id: userIdText.optional(),
    username: storableText({ min: 1, max: 256 }).optional(),
    roles: nameList.optional(),
    groups: nameList.optional(),
    kind: z.enum(["web", "api", "mcp"]).optional(),
    ttl_seconds: ttl.optional(),
    idle_timeout_seconds: z.number().int().min(0).max(31_536_000).optional(),
    metadata: metadataSchema.optional(),
    client: storableText({ min: 1, max: 256 }).optional(),
    /** Upstream credentials kept encrypted for the session's life (docs/credentials.md). */
    credentials: credentialsSchema.optional(),
  })
  .nullish();

export const renewBody = z.strictObject({ ttl_seconds: ttl.optional() }).nullish();

export const validateBody = z
  .strictObject({
    token: z.string().max(512).optional(),
    /** The caller's IdP access token, checked against the session's claims (recycles on a difference). */
    jwt: z.string().max(16_384).optional(),
    // Both may be recorded (SessionTouched), so both must be storable.
    client_ip: storableText({ max: 64 }).optional(),
    user_agent: storableText({ max: 1024 }).optional(),
  })
  .nullish();

export const sessionIdParams = z.strictObject({ id: z.uuid({ message: "id must be a session id (UUID)" }) });

export const listQuery = z.strictObject({
  status: z.enum(["active", "ended", "all"]).default("active"),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
  user_id: userIdText.optional(),
});

export const revokeAllQuery = z.strictObject({ except: z.enum(["current"]).optional() });

/** For routes that take no parameters: an unknown one is refused by name, as on the list routes. */
export const noQuery = z.strictObject({});
export const noBody = z.strictObject({}).nullish();

const instant = z.string();
const nullableInstant = instant.nullable();

export const sessionView = z.object({
  id: z.string(),
  user_id: z.string(),
  username: z.string(),
  kind: z.enum(["web", "api", "mcp"]),
  status: z.enum(["active", "expired", "invalidated", "recycled"]),
  roles: z.array(z.string()),
  groups: z.array(z.string()),
  client: z.string().nullable(),
  ip_address: z.string().nullable(),
  user_agent: z.string().nullable(),
  created_at: instant,
  last_activity_at: instant,
  expires_at: instant,
  idle_expires_at: nullableInstant,
  ended_at: nullableInstant,
  end_reason: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()),
});
/** The 200 answer of POST /v1/sessions/validate. */
export const validateAnswer = z.object({
  valid: z.literal(true),
  session: sessionView,
  user: z.object({
    id: z.string(),
    username: z.string(),
    roles: z.array(z.string()),
    groups: z.array(z.string()),
  }),
});

export type SessionView = z.infer<typeof sessionView>;

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number(),
  code: z.string(),
  detail: z.string(),
  instance: z.string().optional(),
});

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Views already built, per state object (states are immutable: a change makes a new one), with the span
 * of `now` they hold for. Validation answers with the same session's view over and over; building it
 * (three ISO dates and a 17-field object) cost more than the validation itself. Shared, so read-only.
 */
const builtViews = new WeakMap<ExistingSession, { view: SessionView; from: number; until: number }>();

/**
 * A session whose deadline passed is reported as expired even before the scheduler records it: the view
 * tells the truth as of `now`. The returned object may be shared between callers: do not modify it.
 */
export function viewFromState(state: ExistingSession, now: number): SessionView {
  const built = builtViews.get(state);
  if (built !== undefined && now >= built.from && now < built.until) return built.view;
  const view = Object.freeze(buildView(state, now));
  builtViews.set(state, { view, ...viewSpan(state, now) });
  return view;
}

/** The instants around `now` between which an (active) session's view stays the same. */
function viewSpan(state: ExistingSession, now: number): { from: number; until: number } {
  if (state.status !== "active") return { from: -Infinity, until: Infinity };
  const idle = idleDeadline(state) ?? Infinity;
  const firstDeadline = Math.min(state.expiresAt, idle);
  // Not overdue yet; then overdue since the idle deadline; then (overdueInstant's order) since the absolute one.
  if (now < firstDeadline) return { from: -Infinity, until: firstDeadline };
  if (now < state.expiresAt) return { from: idle, until: state.expiresAt };
  return { from: state.expiresAt, until: Infinity };
}

function buildView(state: ExistingSession, now: number): SessionView {
  const idle = idleDeadline(state);
  const overdueAt = state.status === "active" ? overdueInstant(state.expiresAt, idle, now) : undefined;
  return {
    id: state.sessionId,
    user_id: state.userId,
    username: state.username,
    kind: state.kind,
    status: overdueAt !== undefined ? "expired" : state.status,
    roles: state.roles,
    groups: state.groups,
    client: state.client ?? null,
    ip_address: state.ipAddress ?? null,
    user_agent: state.userAgent ?? null,
    created_at: iso(state.createdAt),
    last_activity_at: iso(state.lastActivityAt),
    expires_at: iso(state.expiresAt),
    idle_expires_at: idle === undefined ? null : iso(idle),
    ended_at:
      state.status === "active" ? (overdueAt === undefined ? null : iso(overdueAt)) : iso(state.endedAt),
    end_reason:
      state.status === "active"
        ? overdueAt === undefined
          ? null
          : overdueAt === state.expiresAt
            ? "expired_absolute"
            : "expired_idle"
        : state.endReason,
    metadata: state.metadata,
  };
}

export function viewFromRow(row: SessionRow, now: number): SessionView {
  const idle = row.idleExpiresAt?.getTime();
  const overdueAt = row.status === "active" ? overdueInstant(row.expiresAt.getTime(), idle, now) : undefined;
  return {
    id: row.id,
    user_id: row.userId,
    username: row.username,
    kind: row.kind,
    status: overdueAt !== undefined ? "expired" : row.status,
    roles: row.roles,
    groups: row.groups,
    client: row.client,
    ip_address: row.ipAddress,
    user_agent: row.userAgent,
    created_at: row.createdAt.toISOString(),
    last_activity_at: row.lastActivityAt.toISOString(),
    expires_at: row.expiresAt.toISOString(),
    idle_expires_at: row.idleExpiresAt?.toISOString() ?? null,
    ended_at: overdueAt !== undefined ? iso(overdueAt) : (row.endedAt?.toISOString() ?? null),
    end_reason:
      overdueAt !== undefined
        ? overdueAt === row.expiresAt.getTime()
          ? "expired_absolute"
          : "expired_idle"
        : row.endReason,
    metadata: row.metadata,
  };
}

function overdueInstant(expiresAt: number, idle: number | undefined, now: number): number | undefined {
  if (now >= expiresAt) return expiresAt;
  if (idle !== undefined && now >= idle) return idle;
  return undefined;
}

/**
 * The view of a session memory has judged valid (so active and not overdue), from its validation entry
 * alone: what a validation answers while NATS is away and the session is not cached (every transport). The entry holds everything that changes; what it lacks are the facts of the create the view
 * also shows — client, address, user agent and metadata — reported as null and {} until the log can be
 * read again.
 */
export function viewFromEntry(entry: ValidationEntry): SessionView {
  const idle = idleDeadline(entry);
  return {
    id: entry.sessionId,
    user_id: entry.userId,
    username: entry.username,
    kind: entry.kind,
    status: "active",
    roles: entry.roles,
    groups: entry.groups,
    client: null,
    ip_address: null,
    user_agent: null,
    created_at: iso(entry.createdAt),
    last_activity_at: iso(entry.lastActivityAt),
    expires_at: iso(entry.expiresAt),
    idle_expires_at: idle === undefined ? null : iso(idle),
    ended_at: null,
    end_reason: null,
    metadata: {},
  };
}
