import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { isAdmin, type Principal } from "../../../app/access.ts";
import type { AsOfQuery } from "../../../app/as-of-query.ts";
import type { SessionReadModel } from "../../../app/ports.ts";
import type { SessionService } from "../../../app/session-service.ts";
import type { Clock, IdGenerator } from "../../../domain/ports.ts";
import { createSessionOps } from "../../session-ops/operations.ts";
import type { Authenticate } from "../authenticate.ts";
import { commandContext } from "../command-context.ts";
import { accessDenied, HttpProblem, unauthorized } from "../problem.ts";
import { setReadModelHeaders } from "../read-model-headers.ts";
import { listQuery, sessionView, userIdText, viewFromRow } from "../schemas.ts";
import { asOfResponse, asOfView } from "./audit.ts";

/** Admin routes over one user's sessions (DESIGN §6): list them, or end all of them. */

export type UserSessionRouteDeps = {
  service: SessionService;
  readModel: SessionReadModel;
  authenticate: Authenticate;
  clock: Clock;
  ids: IdGenerator;
  /** Answers `?as_of=<instant>` from the log (src/app/as-of-query.ts); without it `as_of` is refused. */
  asOf?: AsOfQuery | undefined;
};

const userParams = z.strictObject({ id: userIdText });
const userListQuery = listQuery.omit({ user_id: true }).extend({ as_of: z.string().max(64).optional() });

export function userSessionRoutesPlugin(deps: UserSessionRouteDeps) {
  return async (fastify: FastifyInstance) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    // Revoking a user's sessions is shared with the other transports (WebSocket, gRPC).
    const ops = createSessionOps(deps);

    async function requireAdmin(request: FastifyRequest): Promise<Principal> {
      const principal = await deps.authenticate(request);
      if (!principal) throw unauthorized();
      if (!isAdmin(principal)) throw accessDenied("This route needs admin:sessions", "admin:sessions");
      return principal;
    }

    app.get(
      "/v1/users/:id/sessions",
      {
        schema: {
          summary:
            "Admin: one user's sessions (with as_of: those active at that instant, folded from the log)",
          tags: ["admin"],
          params: userParams,
          querystring: userListQuery,
          response: {
            200: z.union([
              z.object({
                user_id: z.string(),
                sessions: z.array(sessionView),
                total: z.number(),
                next_cursor: z.string().nullable(),
              }),
              asOfView,
            ]),
          },
        },
      },
      async (request, reply) => {
        await requireAdmin(request);
        if (request.query.as_of !== undefined) {
          if (!deps.asOf) throw new HttpProblem(400, "invalid_request", "as_of is not available here");
          return asOfResponse(deps.asOf, request.params.id, request.query.as_of);
        }
        setReadModelHeaders(reply, await deps.service.readYourWrites());
        const now = deps.clock.now();
        const page = await deps.readModel.listSessions({
          userId: request.params.id,
          status: request.query.status,
          limit: request.query.limit,
          cursor: request.query.cursor,
          now,
        });
        return {
          user_id: request.params.id,
          sessions: page.sessions.map((row) => viewFromRow(row, now)),
          total: page.total,
          next_cursor: page.nextCursor,
        };
      },
    );

    app.delete(
      "/v1/users/:id/sessions",
      {
        schema: {
          summary: "Admin: end every session of a user (takes effect on every instance at once)",
          tags: ["admin"],
          params: userParams,
          response: { 200: z.object({ count: z.number(), user_id: z.string() }) },
        },
      },
      async (request) => {
        const principal = await requireAdmin(request);
        return ops.revokeUser(principal, request.params.id, (operation) =>
          commandContext(request, principal, deps.ids, operation),
        );
      },
    );
  };
}
