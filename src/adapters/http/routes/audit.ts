import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { isAdmin } from "../../../app/access.ts";
import type { AsOfQuery } from "../../../app/as-of-query.ts";
import type { AuditReadModel } from "../../../app/ports.ts";
import { type DomainEventType, SESSION_EVENT_TYPES, USER_EVENT_TYPES } from "../../../domain/events.ts";
import type { AuditRow } from "../../../projections/audit-row.ts";
import type { Authenticate } from "../authenticate.ts";
import { accessDenied, HttpProblem, unauthorized } from "../problem.ts";
import { sessionView, userIdText, viewFromState } from "../schemas.ts";
import { storableText } from "../storable-text.ts";

/**
 * GET /v1/audit (admin): the audit read model, filtered by user, session, event type and time range,
 * in log order, paged with an opaque cursor. Also the `as_of` answer of GET /v1/users/{id}/sessions.
 */

export type AuditRouteDeps = {
  audit: AuditReadModel;
  asOf: AsOfQuery;
  authenticate: Authenticate;
  /** The newest log position this instance wrote: a page waits (briefly) until the audit model has it. */
  lastWrittenPosition: () => number;
};

const EVENT_TYPES: readonly string[] = [...SESSION_EVENT_TYPES, ...USER_EVENT_TYPES];
// Years 0001-9999 in UTC: Postgres has no year 0, and an offset can carry 0001 or 9999 past either end.
const FIRST_INSTANT = Date.parse("0001-01-01T00:00:00.000Z");
const LAST_INSTANT = Date.parse("9999-12-31T23:59:59.999Z");
const instant = z.iso.datetime({ offset: true, message: "must be an ISO-8601 date-time" }).refine((value) => {
  const at = Date.parse(value);
  return at >= FIRST_INSTANT && at <= LAST_INSTANT;
}, "must be an ISO-8601 date-time between the years 0001 and 9999 (UTC)");

export const auditQuery = z.strictObject({
  user_id: userIdText.optional(),
  session_id: storableText({ min: 1, max: 64 }).optional(),
  type: z
    .string()
    .max(512)
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return undefined;
      const types = value
        .split(",")
        .map((t) => t.trim())
        .filter((t) => t.length > 0);
      const unknown = types.filter((t) => !EVENT_TYPES.includes(t));
      if (unknown.length > 0) {
        ctx.addIssue({ code: "custom", message: `unknown event type(s): ${unknown.join(", ")}` });
        return z.NEVER;
      }
      return types as DomainEventType[];
    }),
  from: instant.optional(),
  to: instant.optional(),
  order: z.enum(["asc", "desc"]).default("asc"),
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(128).optional(),
});

export const auditEventView = z.object({
  position: z.number(),
  occurred_at: z.string(),
  type: z.string(),
  session_id: z.string().nullable(),
  user_id: z.string().nullable(),
  actor: z.object({ kind: z.string(), id: z.string() }),
  source: z.string(),
  reason: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
  metadata: z.record(z.string(), z.unknown()),
});

export const asOfView = z.object({
  user_id: z.string(),
  as_of: z.string(),
  sessions: z.array(sessionView),
  claims: z.object({ roles: z.array(z.string()), groups: z.array(z.string()) }).nullable(),
  position: z.number(),
  complete: z.boolean(),
});

export function auditRoutes(deps: AuditRouteDeps) {
  return (fastify: FastifyInstance) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();

    app.get(
      "/v1/audit",
      {
        schema: {
          summary: "Admin: the audit trail (every event), filtered and paged in log order",
          querystring: auditQuery,
          response: {
            200: z.object({ events: z.array(auditEventView), next_cursor: z.string().nullable() }),
          },
        },
      },
      async (request) => {
        await requireAdmin(deps.authenticate, request);
        const q = request.query;
        const from = q.from === undefined ? undefined : new Date(q.from);
        const to = q.to === undefined ? undefined : new Date(q.to);
        if (from && to && from > to)
          throw new HttpProblem(400, "invalid_request", "from must not be after to");
        const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, q.order);
        await waitForAudit(deps.audit, deps.lastWrittenPosition(), 1_000);
        const page = await deps.audit.list({
          userId: q.user_id,
          sessionId: q.session_id,
          types: q.type,
          from,
          to,
          order: q.order,
          limit: q.limit,
          after,
        });
        return {
          events: page.rows.map(auditView),
          next_cursor: page.nextAfter === null ? null : encodeCursor(page.nextAfter, q.order),
        };
      },
    );
  };
}

/** The body of GET /v1/users/{id}/sessions?as_of=…: sessions active at that instant, folded from the log. */
export async function asOfResponse(asOf: AsOfQuery, userId: string, asOfParam: string) {
  const parsed = instant.safeParse(asOfParam);
  if (!parsed.success) throw new HttpProblem(400, "invalid_request", "as_of must be an ISO-8601 date-time");
  const at = new Date(parsed.data);
  const answer = await asOf.sessionsAsOf(userId, at);
  return {
    user_id: answer.userId,
    as_of: at.toISOString(),
    sessions: answer.sessions.map((session) => viewFromState(session, at.getTime())),
    claims: answer.claims ? { roles: answer.claims.roles, groups: answer.claims.groups } : null,
    position: answer.position,
    complete: answer.complete,
  } satisfies z.infer<typeof asOfView>;
}

export async function requireAdmin(authenticate: Authenticate, request: FastifyRequest) {
  const principal = await authenticate(request);
  if (!principal) throw unauthorized();
  if (!isAdmin(principal)) throw accessDenied("The audit trail needs admin:sessions", "admin:sessions");
  return principal;
}

function auditView(row: AuditRow): z.infer<typeof auditEventView> {
  return {
    position: row.position,
    occurred_at: row.occurredAt.toISOString(),
    type: row.type,
    session_id: row.sessionId,
    user_id: row.userId,
    actor: { kind: row.actorKind, id: row.actorId },
    source: row.source,
    reason: row.reason,
    data: row.data,
    metadata: row.metadata,
  };
}

async function waitForAudit(audit: AuditReadModel, position: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  while ((await audit.checkpoint()) < position && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 50);
  }
}

/** Opaque to clients; bound to the order it was issued for, so a cursor cannot be replayed the other way. */
function encodeCursor(position: number, order: "asc" | "desc"): string {
  return Buffer.from(`${order}:${position}`).toString("base64url");
}

function decodeCursor(cursor: string, order: "asc" | "desc"): number {
  const match = /^(asc|desc):(\d{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match || match[1] !== order) throw new HttpProblem(400, "invalid_request", "Invalid cursor");
  return Number(match[2]);
}
