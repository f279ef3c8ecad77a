import type { IdpSessions } from "../../app/idp-sessions.ts";
import type { BearerAuthenticator } from "./authenticate.ts";
import { requestFacts } from "./authenticate.ts";
import { invalidToken } from "./problem.ts";

/**
 * The HTTP face of IdP sessions: a Bearer authenticator for createAuthenticate. Tokens that do not claim
 * to come from the configured IdP are left to the next authenticator; an IdP token that is refused is a
 * 401 carrying the reason (`recycled` tells the client to sign in again with a fresh token).
 */
export function createIdpBearerAuthenticator(idp: IdpSessions): BearerAuthenticator {
  return async (token, request) => {
    const outcome = await idp.authenticate(token, requestFacts(request));
    switch (outcome.kind) {
      case "not_idp":
        return undefined;
      case "authenticated":
        return outcome.principal;
      case "refused":
        throw invalidToken(
          outcome.reason === "recycled"
            ? "Your roles or groups changed: sign in again"
            : "IdP token is not valid",
          { reason: outcome.reason },
        );
      default: {
        const unreachable: never = outcome;
        return unreachable;
      }
    }
  };
}
