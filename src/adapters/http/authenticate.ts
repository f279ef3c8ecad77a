import { hash, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { type Principal, permissionsFor, sessionPrincipal } from "../../app/access.ts";
import type { Validator } from "../../app/validator.ts";
import { bearerToken } from "../session-ops/bearer-token.ts";
import { rememberPrincipal } from "./access-denied-log.ts";
import { invalidToken, unauthorized } from "./problem.ts";

/** Resolves a Bearer credential this authenticator understands, or returns undefined to let the next one try. */
export type BearerAuthenticator = (token: string, request: FastifyRequest) => Promise<Principal | undefined>;

export type Authenticate = (request: FastifyRequest) => Promise<Principal | undefined>;

export function requestFacts(request: FastifyRequest) {
  const userAgent = request.headers["user-agent"];
  return { ip: request.ip, userAgent: typeof userAgent === "string" ? userAgent : undefined };
}

/**
 * `x-admin-key` (compared in constant time) or `Authorization: Bearer <tss_ session token | JWT>`.
 * A credential that is present but wrong is a 401, never a silent anonymous request.
 */
export function createAuthenticate(deps: {
  adminKey: string | undefined;
  validator: Validator;
  bearerAuthenticators?: BearerAuthenticator[];
}): Authenticate {
  const adminKeyDigest = deps.adminKey === undefined ? undefined : digest(deps.adminKey);
  return async (request) => {
    const adminHeader = request.headers["x-admin-key"];
    if (adminHeader !== undefined) {
      if (
        adminKeyDigest === undefined ||
        typeof adminHeader !== "string" ||
        !timingSafeEqual(digest(adminHeader), adminKeyDigest)
      ) {
        throw unauthorized("Invalid admin key");
      }
      return remembered(request, {
        kind: "admin",
        actor: { kind: "admin", id: "admin-key" },
        via: "admin_key",
      });
    }
    const authorization = request.headers.authorization;
    if (authorization === undefined) return undefined;
    const token = bearerToken(authorization);
    if (!token) throw unauthorized("Authorization must be 'Bearer <token>'");
    if (token.startsWith("tss_")) {
      const outcome = await deps.validator.validate(token, requestFacts(request));
      if (!outcome.valid) throw invalidToken("Session token is not valid", { reason: outcome.reason });
      const entry = outcome.entry;
      return remembered(
        request,
        sessionPrincipal(entry, "session_token", permissionsFor(entry.roles, entry.scope)),
      );
    }
    for (const authenticator of deps.bearerAuthenticators ?? []) {
      const principal = await authenticator(token, request);
      if (principal) return remembered(request, principal);
    }
    throw invalidToken("Bearer token is not valid");
  };
}

/** The error handler names the actor of a 403 from this (src/adapters/http/access-denied-log.ts). */
function remembered(request: FastifyRequest, principal: Principal): Principal {
  rememberPrincipal(request, principal);
  return principal;
}

function digest(value: string) {
  // One-shot: the same digest without a Hash object per request (every admin-key request runs this).
  return hash("sha256", value, "buffer");
}
