import type { FastifyInstance } from "fastify";
import { HttpProblem, sendProblem } from "./problem.ts";

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

/**
 * What the router found no route for: 405 `method_not_allowed` with `Allow` when the path exists under
 * other methods (RFC 9110 §15.5.6), else 404 `not_found`. Only misses pay for the lookup, so the routes
 * themselves carry no hook for it.
 */
export function registerNotFound(app: FastifyInstance) {
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "/";
    const allowed = METHODS.filter(
      (method) => method !== request.method && app.findRoute({ method, url: path }) !== null,
    );
    if (allowed.length === 0) {
      return sendProblem(reply, new HttpProblem(404, "not_found", `No route for ${request.method} ${path}`));
    }
    const allow = allowed.join(", ");
    return sendProblem(
      reply,
      new HttpProblem(
        405,
        "method_not_allowed",
        `${request.method} is not allowed on ${path}; use ${allow}`,
        {},
        {
          allow,
        },
      ),
    );
  });
}
