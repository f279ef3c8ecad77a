import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { can, canActOn, isAdmin, type Principal } from "../../../app/access.ts";
import type { CommandContext } from "../../../app/command-handler.ts";
import type { SessionReadModel } from "../../../app/ports.ts";
import type { SessionService } from "../../../app/session-service.ts";
import { statsFor } from "../../../app/session-stats.ts";
import type { RequestFacts, Validator } from "../../../app/validator.ts";
import { sessionNotFound } from "../../../domain/errors.ts";
import type { Clock, IdGenerator } from "../../../domain/ports.ts";
import type { ExistingSession } from "../../../domain/session-state.ts";
import type { ValidationEntry } from "../../../projections/validation-entry.ts";
import type { Authenticate } from "../authenticate.ts";
import { requestFacts } from "../authenticate.ts";
import { commandContext, idempotencyKeyOf, principalKey } from "../command-context.ts";
import { compiledSerializer } from "../compiled-serializer.ts";
import { accessDenied, HttpProblem, unauthorized } from "../problem.ts";
import { quickValidator } from "../quick-validator.ts";
import { setReadModelHeaders } from "../read-model-headers.ts";
import {
  createSessionBody,
  listQuery,
  renewBody,
  revokeAllQuery,
  sessionIdParams,
  sessionView,
  validateBody,
  viewFromRow,
  viewFromState,
} from "../schemas.ts";

export type SessionRouteDeps = {
  service: SessionService;
  validator: Validator;
  readModel: SessionReadModel;
  authenticate: Authenticate;
  clock: Clock;
  ids: IdGenerator;
  /**
   * Expires every overdue session now and returns how many this call expired (the expiry scheduler's
   * sweep: its deadline index and the read model). Without it, cleanup pages through the read model only.
   */
  expireOverdue?: ((context: CommandContext) => Promise<number>) | undefined;
  /** Removes pruned sessions from the validation view too (cleanup prunes both). */
  forgetEndedSessions?: ((sessionIds: string[]) => Promise<void>) | undefined;
  /**
   * A gateway's `jwt` next to the token: does the caller's IdP token still agree with the session (same
   * subject, same roles and groups)? A difference records the change and recycles (see idp-sessions.ts).
   */
  checkJwtClaims?:
    | ((
        entry: ValidationEntry,
        jwt: string,
        facts: { ip?: string | undefined; userAgent?: string | undefined },
      ) => Promise<{ ok: true } | { ok: false; reason: string }>)
    | undefined;
};

const statsView = z.object({
  active: z.number(),
  expired: z.number(),
  invalidated: z.number(),
  recycled: z.number(),
  total: z.number(),
  created_today: z.number(),
  last_activity_at: z.string().nullable(),
  scope: z.enum(["user", "global"]),
});

export function registerSessionRoutes(fastify: FastifyInstance, deps: SessionRouteDeps) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const { service, clock, ids } = deps;

  async function requirePrincipal(request: FastifyRequest): Promise<Principal> {
    const principal = await deps.authenticate(request);
    if (!principal) throw unauthorized();
    return principal;
  }

  /** Reads need the log's current answer. */
  async function loadReadable(principal: Principal, id: string) {
    const session = await service.get(id);
    if (!session) throw sessionNotFound(id);
    if (!canActOn(principal, session.userId, "sessions:read"))
      throw accessDenied("Access denied to this session");
    return session;
  }

  /** A write only needs the (immutable) owner — the command decides the rest on the log. Returns it. */
  async function checkWritable(principal: Principal, id: string): Promise<string> {
    const owner = await service.ownerOf(id);
    if (owner === undefined) throw sessionNotFound(id);
    if (!canActOn(principal, owner, "sessions:write")) throw accessDenied("Access denied to this session");
    return owner;
  }

  const view = (session: ExistingSession) => viewFromState(session, clock.now());

  app.post(
    "/v1/sessions",
    {
      serializerCompiler: compiledSerializer,
      validatorCompiler: quickValidator,
      schema: {
        summary: "Create a session",
        body: createSessionBody,
        response: { 201: z.object({ session: sessionView, token: z.string() }) },
      },
    },
    async (request, reply) => {
      const principal = await requirePrincipal(request);
      const body = request.body ?? {};
      const facts = requestFacts(request);
      let owner: {
        userId: string;
        username: string;
        roles: string[];
        groups: string[];
        idpSessionId?: string | undefined;
      };
      if (principal.kind === "admin") {
        if (!body.user_id)
          throw new HttpProblem(400, "invalid_request", "user_id is required with x-admin-key");
        owner = {
          userId: body.user_id,
          username: body.username ?? body.user_id,
          roles: body.roles ?? [],
          groups: body.groups ?? [],
        };
      } else {
        if (!principal.permissions.has("sessions:write"))
          throw accessDenied("Creating sessions needs sessions:write");
        if (body.user_id !== undefined && body.user_id !== principal.userId) {
          throw accessDenied("Only an admin may create sessions for another user");
        }
        if (body.roles !== undefined || body.groups !== undefined) {
          throw accessDenied("Only an admin may set roles or groups");
        }
        // Under an IdP token the new session carries its sid, as the sign-in's own session does: a
        // back-channel logout by sid then ends it too.
        const { userId, username, roles, groups, idpSessionId } = principal;
        owner = { userId, username, roles, groups, idpSessionId };
      }
      const created = await service.create(
        {
          // Listed, not spread: V8 (Node 20) adds properties that follow a spread in an object literal
          // through its slow path, building new maps on every call (~9 µs per create here).
          userId: owner.userId,
          username: owner.username,
          roles: owner.roles,
          groups: owner.groups,
          idpSessionId: owner.idpSessionId,
          kind: body.kind ?? "api",
          // A session a user opens for itself carries the caller's permissions, so a narrowly scoped token
          // cannot mint a broader one.
          scope: principal.kind === "user" ? [...principal.permissions] : [],
          ttlSeconds: body.ttl_seconds,
          idleTimeoutSeconds: body.idle_timeout_seconds,
          client: body.client,
          ipAddress: facts.ip,
          userAgent: facts.userAgent,
          metadata: body.metadata ?? {},
          idempotencyKey: idempotencyKeyOf(request),
          principal: principalKey(principal),
        },
        commandContext(request, principal, ids, "create-session"),
      );
      if (created.replayed) reply.header("idempotent-replayed", "true");
      reply.header("location", `/v1/sessions/${created.session.sessionId}`);
      return reply.code(201).send({ session: view(created.session), token: created.token });
    },
  );

  app.get(
    "/v1/sessions",
    {
      schema: {
        summary: "List the caller's sessions (admin: everyone's, or one user's with user_id)",
        querystring: listQuery,
        response: {
          200: z.object({
            sessions: z.array(sessionView),
            total: z.number(),
            next_cursor: z.string().nullable(),
          }),
        },
      },
    },
    async (request, reply) => {
      const principal = await requirePrincipal(request);
      if (!can(principal, "sessions:read")) throw accessDenied("Listing sessions needs sessions:read");
      const query = request.query;
      let userId: string | undefined;
      if (isAdmin(principal)) userId = query.user_id;
      else if (principal.kind === "user") {
        if (query.user_id !== undefined && query.user_id !== principal.userId) throw accessDenied();
        userId = principal.userId;
      }
      setReadModelHeaders(reply, await service.readYourWrites());
      const now = clock.now();
      const page = await deps.readModel.listSessions({
        userId,
        status: query.status,
        limit: query.limit,
        cursor: query.cursor,
        now,
      });
      return {
        sessions: page.sessions.map((row) => viewFromRow(row, now)),
        total: page.total,
        next_cursor: page.nextCursor,
      };
    },
  );

  app.get(
    "/v1/sessions/stats",
    { schema: { summary: "Session statistics: own, or global for admins", response: { 200: statsView } } },
    async (request, reply) => {
      const principal = await requirePrincipal(request);
      if (!can(principal, "sessions:read")) throw accessDenied("Statistics need sessions:read");
      const { stats, scope, freshness } = await statsFor(principal, {
        service,
        readModel: deps.readModel,
        clock,
      });
      setReadModelHeaders(reply, freshness);
      return {
        active: stats.active,
        expired: stats.expired,
        invalidated: stats.invalidated,
        recycled: stats.recycled,
        total: stats.total,
        created_today: stats.createdToday,
        last_activity_at: stats.lastActivityAt?.toISOString() ?? null,
        scope,
      };
    },
  );

  app.post(
    "/v1/sessions/validate",
    {
      serializerCompiler: compiledSerializer,
      validatorCompiler: quickValidator,
      schema: {
        summary: "Is this session token valid now?",
        body: validateBody,
        response: {
          200: z.object({
            valid: z.literal(true),
            session: sessionView,
            user: z.object({
              id: z.string(),
              username: z.string(),
              roles: z.array(z.string()),
              groups: z.array(z.string()),
            }),
          }),
          401: z.object({ valid: z.literal(false), reason: z.string() }),
        },
      },
    },
    (request, reply) => {
      const body = request.body ?? {};
      const token = body.token ?? bearerOf(request);
      const facts = {
        ip: body.client_ip ?? request.ip,
        userAgent: body.user_agent ?? requestFacts(request).userAgent,
      };
      // Memory answers almost every validation, and then this whole request runs synchronously (no
      // promise per step); anything that needs I/O continues asynchronously.
      const outcome = token === undefined ? MALFORMED : deps.validator.validateCached(token, facts);
      if (outcome === undefined) return validateSlowly(token as string, facts, body.jwt, reply);
      if (!outcome.valid) {
        reply.code(401).send(refusal(outcome.reason));
        return;
      }
      if (body.jwt !== undefined) return answerValid(outcome.entry, facts, body.jwt, reply);
      const session = service.cachedAtLeast(outcome.entry.sessionId, outcome.entry.position);
      if (session === undefined) return answerValid(outcome.entry, facts, undefined, reply);
      reply.send(validAnswer(outcome.entry, session));
    },
  );

  async function validateSlowly(
    token: string,
    facts: RequestFacts,
    jwt: string | undefined,
    reply: FastifyReply,
  ): Promise<void> {
    const outcome = await deps.validator.validate(token, facts);
    if (!outcome.valid) {
      reply.code(401).send(refusal(outcome.reason));
      return;
    }
    await answerValid(outcome.entry, facts, jwt, reply);
  }

  /** A valid token's answer once the IdP token (if any) agrees and the session's state is at hand. */
  async function answerValid(
    entry: ValidationEntry,
    facts: RequestFacts,
    jwt: string | undefined,
    reply: FastifyReply,
  ): Promise<void> {
    if (jwt !== undefined) {
      const verdict = deps.checkJwtClaims
        ? await deps.checkJwtClaims(entry, jwt, facts)
        : { ok: false as const, reason: "malformed" };
      if (!verdict.ok) {
        reply.code(401).send(refusal(verdict.reason));
        return;
      }
    }
    const session = await service.getAtLeast(entry.sessionId, entry.position);
    if (!session) reply.code(401).send(refusal("not_found"));
    else reply.send(validAnswer(entry, session));
  }

  const validAnswer = (e: ValidationEntry, session: ExistingSession) => ({
    valid: true as const,
    session: view(session),
    user: { id: e.userId, username: e.username, roles: e.roles, groups: e.groups },
  });

  app.post(
    "/v1/sessions/cleanup",
    {
      schema: {
        summary: "Admin: expire every overdue session now and prune old ended rows",
        response: { 200: z.object({ expired: z.number(), pruned: z.number() }) },
      },
    },
    async (request) => {
      const principal = await requirePrincipal(request);
      if (!isAdmin(principal)) throw accessDenied("Cleanup needs admin:sessions");
      const now = clock.now();
      let expired = 0;
      const context = commandContext(request, principal, ids, "cleanup");
      if (deps.expireOverdue) expired = await deps.expireOverdue(context);
      else
        for (;;) {
          const overdue = await deps.readModel.overdueSessionIds(now, 500);
          let progressed = 0;
          for (const sessionId of overdue) {
            const result = await service.expire(sessionId, undefined, {
              ...context,
              commandId: `${context.commandId}:${sessionId}`,
            });
            if (result.appended.length > 0) expired++;
            if (result.state.status !== "active") progressed++;
          }
          if (overdue.length < 500 || progressed === 0) break;
          await service.readYourWrites(5_000);
        }
      const pruned = await deps.readModel.pruneEnded(
        now - service.policy.retentionSeconds * 1000,
        deps.forgetEndedSessions,
      );
      return { expired, pruned };
    },
  );

  app.get(
    "/v1/sessions/:id",
    {
      serializerCompiler: compiledSerializer,
      schema: { summary: "One session", params: sessionIdParams, response: { 200: sessionView } },
    },
    async (request) => {
      const principal = await requirePrincipal(request);
      return view(await loadReadable(principal, request.params.id));
    },
  );

  app.post(
    "/v1/sessions/:id/renew",
    {
      schema: {
        summary: "Extend a session's expiry (never past its absolute maximum lifetime)",
        params: sessionIdParams,
        body: renewBody,
        response: { 200: z.object({ session: sessionView }) },
      },
    },
    async (request) => {
      const principal = await requirePrincipal(request);
      const id = request.params.id;
      await checkWritable(principal, id);
      const renewed = await service.renew(
        id,
        request.body?.ttl_seconds,
        commandContext(request, principal, ids, `renew:${id}`),
      );
      if (renewed.status !== "active") {
        throw new HttpProblem(409, "session_ended", "Session has ended", {
          status: renewed.status,
          end_reason: renewed.endReason,
        });
      }
      return { session: view(renewed) };
    },
  );

  app.delete(
    "/v1/sessions/:id",
    {
      serializerCompiler: compiledSerializer,
      schema: {
        summary: "Invalidate a session (idempotent: an ended session answers with its end reason)",
        params: sessionIdParams,
        response: { 200: z.object({ session: sessionView, end_reason: z.string() }) },
      },
    },
    async (request) => {
      const principal = await requirePrincipal(request);
      const id = request.params.id;
      const owner = await checkWritable(principal, id);
      const reason = principal.kind === "user" && principal.userId === owner ? "revoked" : "revoked_by_admin";
      const ended = await service.invalidate(
        id,
        reason,
        commandContext(request, principal, ids, `invalidate:${id}`),
      );
      const shown = view(ended);
      return { session: shown, end_reason: shown.end_reason ?? "revoked" };
    },
  );

  app.delete(
    "/v1/sessions",
    {
      schema: {
        summary: "Invalidate all of the caller's sessions (except=current keeps the calling one)",
        querystring: revokeAllQuery,
        response: { 200: z.object({ count: z.number(), user_id: z.string() }) },
      },
    },
    async (request) => {
      const principal = await requirePrincipal(request);
      if (principal.kind !== "user") {
        throw new HttpProblem(
          400,
          "invalid_request",
          "Use DELETE /v1/users/{id}/sessions to revoke a user's sessions as admin",
        );
      }
      if (!principal.permissions.has("sessions:write")) throw accessDenied("Needs sessions:write");
      const except = request.query.except === "current" ? principal.sessionId : undefined;
      const count = await service.revokeAll(
        principal.userId,
        "revoke_all",
        except,
        commandContext(request, principal, ids, "revoke-all"),
      );
      return { count, user_id: principal.userId };
    },
  );
}

const refusal = (reason: string) => ({ valid: false as const, reason });
const MALFORMED = { valid: false as const, reason: "malformed" };

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
