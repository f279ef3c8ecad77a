import type { FastifyInstance } from "fastify";
import type { BackchannelLogout } from "../../../app/idp-logout.ts";
import { acceptFormBodies } from "../form-bodies.ts";

/**
 * POST /v1/backchannel-logout — OIDC Back-Channel Logout 1.0 §2.5/§2.8: the IdP posts `logout_token`
 * form-encoded; 200 with `Cache-Control: no-store` once handled (also when no session matched), 400 with
 * an OAuth-style `{error, error_description}` body when the token is refused.
 */
export function backchannelLogoutRoutes(deps: { logout: BackchannelLogout }) {
  return async (root: FastifyInstance) => {
    // Its own scope: the only other route that takes form bodies besides the token endpoint.
    await root.register(async (app) => {
      await acceptFormBodies(app);
      app.post("/v1/backchannel-logout", async (request, reply) => {
        const body = request.body;
        const field =
          typeof body === "object" && body !== null
            ? (body as Record<string, unknown>).logout_token
            : undefined;
        const userAgent = request.headers["user-agent"];
        const outcome = await deps.logout.handle(typeof field === "string" ? field : undefined, {
          ip: request.ip,
          userAgent: typeof userAgent === "string" ? userAgent : undefined,
        });
        reply.header("cache-control", "no-store");
        if (!outcome.ok) {
          return reply.code(400).send({ error: "invalid_request", error_description: outcome.description });
        }
        return reply.code(200).send();
      });
    });
  };
}
