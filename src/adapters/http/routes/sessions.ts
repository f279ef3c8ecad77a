import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { can, isAdmin, type Principal } from "../../../app/access.ts";
import type { CommandContext } from "../../../app/command-handler.ts";
import type { SessionReadModel } from "../../../app/ports.ts";
import type { SessionService } from "../../../app/session-service.ts";
import { statsFor } from "../../../app/session-stats.ts";
import type { Validator } from "../../../app/validator.ts";
import type { Clock, IdGenerator } from "../../../domain/ports.ts";
import { authorizeCreate, createInput } from "../../session-ops/create.ts";
import { CREATE_OPERATION } from "../../session-ops/idempotency-key.ts";
import { type ContextFor, createSessionOps } from "../../session-ops/operations.ts";
import type { Authenticate } from "../authenticate.ts";
import { requestFacts } from "../authenticate.ts";
import { commandContext, idempotencyKeyOf } from "../command-context.ts";
import { compiledSerializer } from "../compiled-serializer.ts";
import { accessDenied, unauthorized } from "../problem.ts";
import { quickValidator } from "../quick-validator.ts";
import { setReadModelHeaders } from "../read-model-headers.ts";
import {
  createSessionBody,
  listQuery,
  noBody,
  noQuery,
  renewBody,
  revokeAllQuery,
  sessionIdParams,
  sessionView,
} from "../schemas.ts";
import { type CredentialSupport, credentialSealer } from "./credentials.ts";
import { type CheckJwtClaims, registerValidateRoute } from "./session-validate.ts";

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
  /** The MCP session URL of a new session's token (src/adapters/mcp/session-url.ts); none without it. */
  sessionUrl?: ((request: FastifyRequest, token: string) => string | undefined) | undefined;
  /** Removes pruned sessions from the validation view too (cleanup prunes both). */
  forgetEndedSessions?: ((sessionIds: string[]) => Promise<void>) | undefined;
  /** Upstream credentials at create (docs/credentials.md); absent: a create carrying them is refused. */
  credentials?: CredentialSupport | undefined;
  /** A gateway's IdP `jwt` next to the token at validate (session-validate.ts). */
  checkJwtClaims?: CheckJwtClaims | undefined;
  /** Answer most validations before Fastify (fast-validate.ts); default on. */
  fastPath?: boolean | undefined;
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
  // Who may act on which session, and the flows, are shared with the other transports (session-ops);
  // parsing, status codes, headers and idempotency stay here.
  const ops = createSessionOps(deps);
  const view = ops.view;

  async function requirePrincipal(request: FastifyRequest): Promise<Principal> {
    const principal = await deps.authenticate(request);
    if (!principal) throw unauthorized();
    return principal;
  }

  /** Command metadata for a write, built once access is decided (Idempotency-Key derives the id). */
  const contextFor =
    (request: FastifyRequest, principal: Principal): ContextFor =>
    (operation) =>
      commandContext(request, principal, ids, operation);

  app.post(
    "/v1/sessions",
    {
      serializerCompiler: compiledSerializer,
      validatorCompiler: quickValidator,
      schema: {
        summary: "Create a session",
        body: createSessionBody,
        response: {
          201: z.object({
            session: sessionView,
            token: z.string(),
            session_url: z
              .string()
              .optional()
              .describe("MCP server URL carrying the token (<public URL>/mcp/u/<token>), see docs/mcp.md"),
          }),
        },
      },
    },
    async (request, reply) => {
      const principal = await requirePrincipal(request);
      const body = request.body ?? {};
      const facts = requestFacts(request);
      const self = authorizeCreate(principal, body);
      // Checked upstream before anything is written; sealed once the session id exists.
      const sealCredentials =
        body.credentials === undefined
          ? undefined
          : await credentialSealer(deps.credentials, body.credentials);
      const created = await service.create(
        createInput(
          principal,
          self,
          body,
          facts.ip,
          facts.userAgent,
          idempotencyKeyOf(request),
          sealCredentials,
        ),
        commandContext(request, principal, ids, CREATE_OPERATION),
      );
      if (created.replayed) reply.header("idempotent-replayed", "true");
      reply.header("location", `/v1/sessions/${created.session.sessionId}`);
      return reply.code(201).send({
        session: view(created.session),
        token: created.token,
        session_url: deps.sessionUrl?.(request, created.token),
      });
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
      return ops.list(principal, request.query, (freshness) => setReadModelHeaders(reply, freshness));
    },
  );

  app.get(
    "/v1/sessions/stats",
    {
      schema: {
        summary: "Session statistics: own, or global for admins",
        querystring: noQuery,
        response: { 200: statsView },
      },
    },
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

  registerValidateRoute(fastify, deps);

  app.post(
    "/v1/sessions/cleanup",
    {
      schema: {
        summary: "Admin: expire every overdue session now and prune old ended rows",
        querystring: noQuery,
        body: noBody,
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
      return view(await ops.readable(principal, request.params.id));
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
      const ttl = request.body?.ttl_seconds;
      return ops.renew(principal, request.params.id, ttl, contextFor(request, principal));
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
      return ops.invalidate(principal, request.params.id, contextFor(request, principal));
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
      const exceptCurrent = request.query.except === "current";
      return ops.revokeAll(principal, exceptCurrent, contextFor(request, principal));
    },
  );
}
