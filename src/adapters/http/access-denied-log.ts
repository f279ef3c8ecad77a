import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Permission, Principal } from "../../app/access.ts";
import { logAccessDenied } from "../../app/security-events.ts";
import { AccessDeniedProblem, type HttpProblem } from "./problem.ts";

/**
 * Who each request authenticated as, kept so the error handler can name the actor of a 403 without every
 * route passing it along. Weakly held: it goes with the request.
 */
const principals = new WeakMap<FastifyRequest, Principal>();

export function rememberPrincipal(request: FastifyRequest, principal: Principal): void {
  principals.set(request, principal);
}

const PERMISSIONS: readonly Permission[] = ["admin:sessions", "sessions:read", "sessions:write"];

/**
 * Logs a 403 access_denied as a security event (src/app/security-events.ts). The permission is the one
 * the refusing check declared; a check that declared none but named one in its message ("… needs
 * sessions:read") still gets it, so older call sites are not silent about what was missing.
 */
export function logRefusal(logger: Logger | undefined, request: FastifyRequest, problem: HttpProblem): void {
  if (problem.code !== "access_denied") return;
  const declared = problem instanceof AccessDeniedProblem ? problem.permission : undefined;
  logAccessDenied(logger ?? request.log, principals.get(request), {
    surface: "rest",
    route: `${request.method} ${request.routeOptions.url ?? request.url.split("?")[0]}`,
    permission: declared ?? PERMISSIONS.find((permission) => problem.detail.includes(permission)),
    detail: problem.detail,
    ip: request.ip,
    requestId: request.id,
  });
}
