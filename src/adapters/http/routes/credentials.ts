import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { CredentialChecker } from "../../../app/credential-check.ts";
import { CredentialsError, type CredentialVault } from "../../../app/credential-vault.ts";
import type { Validator } from "../../../app/validator.ts";
import type { SealedCredentials } from "../../../domain/events.ts";
import { bearerToken } from "../../session-ops/bearer-token.ts";
import type { Authenticate } from "../authenticate.ts";
import { requestFacts } from "../authenticate.ts";
import { accessDenied, HttpProblem, invalidToken, unauthorized } from "../problem.ts";
import { sessionIdParams } from "../schemas.ts";

/**
 * Upstream credentials kept for a session's life (seed 000, docs/credentials.md): the create side's check
 * and sealing, and GET /v1/sessions/{id}/credentials, which hands them back to the session's own token only.
 */

/** What the composition root configured; `vault` is absent when no master key is available. */
export type CredentialSupport = {
  vault: CredentialVault | undefined;
  check: CredentialChecker | undefined;
};

const STATUS: Record<CredentialsError["code"], number> = {
  credentials_invalid: 401,
  credentials_unsupported: 501,
  credentials_not_found: 404,
  credentials_destroyed: 410,
  credentials_unreadable: 500,
};

export function credentialsProblem(error: CredentialsError): HttpProblem {
  return new HttpProblem(STATUS[error.code], error.code, error.message);
}

const unsupported = () =>
  credentialsProblem(
    new CredentialsError(
      "credentials_unsupported",
      "This deployment keeps no upstream credentials: TESSERA_CREDENTIALS_KEY is not set",
    ),
  );

/**
 * For a create carrying `credentials`: refuses them when they cannot be kept, checks them with the validator
 * service (nothing is written when it refuses), and returns what seals them once the session id exists.
 */
export async function credentialSealer(
  support: CredentialSupport | undefined,
  credentials: Record<string, unknown>,
): Promise<(sessionId: string) => Promise<SealedCredentials>> {
  const vault = support?.vault;
  if (vault === undefined) throw unsupported();
  try {
    await support?.check?.(credentials);
  } catch (error) {
    throw error instanceof CredentialsError ? credentialsProblem(error) : error;
  }
  return (sessionId) => vault.seal(sessionId, credentials);
}

export type CredentialRouteDeps = {
  support: CredentialSupport;
  validator: Validator;
  authenticate: Authenticate;
};

const ENDED: ReadonlySet<string> = new Set(["expired", "invalidated", "recycled"]);
const ONLY_OWN_TOKEN = "Only the session's own session token (tss_) may read its credentials";

export function credentialRoutes(deps: CredentialRouteDeps) {
  return (fastify: FastifyInstance) => {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    const { validator } = deps;

    /**
     * The caller must present the session's own `tss_` token. The admin key and access JWTs are refused
     * (403) even for the same session: an admin has no business with a user's upstream secrets, and a JWT is
     * a narrower, shorter-lived credential a client hands to other services. Resolves whether the session
     * is still active; an ended one's token (right secret) is told so, to answer 410 rather than 401.
     */
    async function ownSession(request: FastifyRequest, sessionId: string): Promise<"active" | "ended"> {
      const presented = bearerToken(request.headers.authorization);
      const token = presented?.startsWith("tss_") ? presented : undefined;
      if (token === undefined || request.headers["x-admin-key"] !== undefined) {
        // Authenticate first: a wrong credential stays a 401, a right one of the wrong kind is a 403.
        if ((await deps.authenticate(request)) === undefined) throw unauthorized();
        throw accessDenied(ONLY_OWN_TOKEN);
      }
      const outcome = await validator.validate(token, requestFacts(request));
      if (outcome.valid) {
        if (outcome.entry.sessionId !== sessionId) throw accessDenied(ONLY_OWN_TOKEN);
        return "active";
      }
      // `entry` is only set once the secret matched: an ended session's own token.
      if (outcome.entry?.sessionId === sessionId && ENDED.has(outcome.reason)) return "ended";
      throw invalidToken("Session token is not valid", { reason: outcome.reason });
    }

    app.get(
      "/v1/sessions/:id/credentials",
      {
        schema: {
          summary: "The upstream credentials given when this session was created (its own token only)",
          params: sessionIdParams,
          response: { 200: z.record(z.string(), z.unknown()) },
        },
      },
      async (request, reply) => {
        const { id } = request.params;
        const state = await ownSession(request, id);
        const vault = deps.support.vault;
        if (vault === undefined) throw unsupported();
        // Secrets (or their absence) are never cached anywhere on the way back.
        reply.header("cache-control", "no-store");
        try {
          if (state === "ended") {
            // Whatever the log or the key store say at this moment: an ended session's secrets are gone.
            if (!(await vault.holdsCredentials(id)))
              throw new CredentialsError("credentials_not_found", "This session holds no credentials");
            throw new CredentialsError(
              "credentials_destroyed",
              "This session has ended: its credentials were destroyed with it",
            );
          }
          return await vault.open(id);
        } catch (error) {
          if (!(error instanceof CredentialsError)) throw error;
          if (error.code === "credentials_unreadable") request.log.error({ sessionId: id }, error.message);
          throw credentialsProblem(error);
        }
      },
    );
  };
}
