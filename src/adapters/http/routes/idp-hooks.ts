import type { FastifyInstance } from "fastify";
import type { IdpWebhooks } from "../../../app/idp-webhooks.ts";
import { HttpProblem, sendProblem } from "../problem.ts";

/**
 * POST /v1/hooks/idp — the IdP's signed webhooks (Standard Webhooks). The signature covers the body byte
 * for byte, so this route reads it as a string (its own content-type parser, in its own encapsulated
 * context) and parses the JSON only once the signature holds.
 */
export function idpHookRoutes(deps: { webhooks: IdpWebhooks | undefined }) {
  return async (fastify: FastifyInstance) => {
    await fastify.register(async (child) => {
      child.removeAllContentTypeParsers();
      child.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => done(null, body));

      child.post("/v1/hooks/idp", async (request, reply) => {
        if (!deps.webhooks) {
          return sendProblem(reply, new HttpProblem(404, "not_found", "IdP webhooks are not configured"));
        }
        const header = (name: string) => {
          const value = request.headers[name];
          return typeof value === "string" ? value : undefined;
        };
        const outcome = await deps.webhooks.handle(
          {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
          },
          typeof request.body === "string" ? request.body : "",
          { ip: request.ip, userAgent: header("user-agent") },
        );
        switch (outcome.status) {
          case 200:
            return reply.code(200).send(outcome.body);
          case 400:
            return sendProblem(reply, new HttpProblem(400, "invalid_request", outcome.detail));
          case 401:
            return sendProblem(
              reply,
              new HttpProblem(
                401,
                "unauthorized",
                outcome.detail,
                { reason: outcome.problem },
                {
                  "www-authenticate": 'Signature realm="tessera"',
                },
              ),
            );
          default: {
            const unreachable: never = outcome;
            return unreachable;
          }
        }
      });
    });
  };
}
