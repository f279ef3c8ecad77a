import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { isAdmin, type Principal } from "../../../app/access.ts";
import type { UserService } from "../../../app/user-service.ts";
import type { IdGenerator } from "../../../domain/ports.ts";
import type { Authenticate } from "../authenticate.ts";
import { commandContext } from "../command-context.ts";
import { accessDenied, HttpProblem, unauthorized } from "../problem.ts";
import { noBody, noQuery, userIdText } from "../schemas.ts";
import { storableText } from "../storable-text.ts";

/**
 * Recycling over REST: set a user's claims (which recycles every live session holding other ones, through
 * the recycle process manager), and recycle the caller's or a user's sessions outright (seed 003).
 */

export type RecycleRouteDeps = {
  users: UserService;
  authenticate: Authenticate;
  ids: IdGenerator;
};

const names = z.array(storableText({ min: 1, max: 128 })).max(64);
const userParams = z.strictObject({ id: userIdText });
const claimsBody = z.strictObject({ roles: names, groups: names.default([]) });
const recycledView = z.object({ recycled: z.number(), user_id: z.string() });

export function recycleRoutes(deps: RecycleRouteDeps) {
  return (fastify: FastifyInstance) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    const { users, ids } = deps;

    async function requireAdmin(request: FastifyRequest): Promise<Principal> {
      const principal = await deps.authenticate(request);
      if (!principal) throw unauthorized();
      if (!isAdmin(principal)) throw accessDenied("Needs admin:sessions", "admin:sessions");
      return principal;
    }

    app.put(
      "/v1/users/:id/claims",
      {
        schema: {
          summary: "Admin: set a user's roles and groups; every live session holding other ones is recycled",
          params: userParams,
          body: claimsBody,
          response: {
            200: z.object({
              user_id: z.string(),
              roles: z.array(z.string()),
              groups: z.array(z.string()),
              changed: z.boolean(),
              event_id: z.string().nullable(),
            }),
          },
        },
      },
      async (request) => {
        const principal = await requireAdmin(request);
        const userId = request.params.id;
        const change = await users.changeClaims(
          userId,
          { roles: request.body.roles, groups: request.body.groups },
          commandContext(request, principal, ids, `claims:${userId}`),
        );
        return {
          user_id: userId,
          roles: change.claims.roles,
          groups: change.claims.groups,
          changed: change.changed,
          event_id: change.event?.metadata.eventId ?? null,
        };
      },
    );

    app.post(
      "/v1/sessions/recycle",
      {
        schema: {
          summary: "Recycle every live session of the caller",
          querystring: noQuery,
          body: noBody,
          response: { 200: recycledView },
        },
      },
      async (request) => {
        const principal = await deps.authenticate(request);
        if (!principal) throw unauthorized();
        if (principal.kind !== "user") {
          throw new HttpProblem(
            400,
            "invalid_request",
            "Use POST /v1/users/{id}/recycle to recycle a user's sessions as admin",
          );
        }
        if (!principal.permissions.has("sessions:write"))
          throw accessDenied("Needs sessions:write", "sessions:write");
        const recycled = await users.recycleUser(
          principal.userId,
          "recycled",
          commandContext(request, principal, ids, "recycle-own"),
        );
        return { recycled, user_id: principal.userId };
      },
    );

    app.post(
      "/v1/users/:id/recycle",
      {
        schema: {
          summary: "Admin: recycle every live session of a user",
          params: userParams,
          querystring: noQuery,
          body: noBody,
          response: { 200: recycledView },
        },
      },
      async (request) => {
        const principal = await requireAdmin(request);
        const userId = request.params.id;
        const recycled = await users.recycleUser(
          userId,
          "recycled",
          commandContext(request, principal, ids, `recycle:${userId}`),
        );
        return { recycled, user_id: userId };
      },
    );
  };
}
