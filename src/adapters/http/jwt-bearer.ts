import type { Permission } from "../../app/access.ts";
import { permissionsFor, sessionPrincipal } from "../../app/access.ts";
import { type AccessTokens, JwtRejected } from "../../app/jwt.ts";
import type { Validator } from "../../app/validator.ts";
import { type BearerAuthenticator, requestFacts } from "./authenticate.ts";
import { HttpProblem } from "./problem.ts";

/**
 * `Authorization: Bearer <access JWT>` for Tessera's own tokens. A good signature is not enough: the
 * session the token names (`sid`) must be valid at this moment, judged from this instance's replica of
 * the validation view exactly like a session token, so ending a session (or all of a user's) refuses its
 * access tokens at once on every instance, long before they expire. Tokens that are not ours (another
 * kid and issuer) are left to the next authenticator.
 */
export function createJwtBearerAuthenticator(deps: {
  accessTokens: AccessTokens;
  validator: Validator;
}): BearerAuthenticator {
  const { accessTokens, validator } = deps;
  return async (token, request) => {
    if (!accessTokens.isOwn(token)) return undefined;
    let claims: Awaited<ReturnType<AccessTokens["verify"]>>;
    try {
      claims = await accessTokens.verify(token);
    } catch (error) {
      if (error instanceof JwtRejected) throw invalidToken(error.reason);
      throw error;
    }
    const outcome = await validator.validateSession(claims.sid, requestFacts(request));
    if (!outcome.valid) throw invalidToken(`session_${outcome.reason}`);
    const entry = outcome.entry;
    if (entry.userId !== claims.sub) throw invalidToken("subject_mismatch");
    // Scopes only narrow; a token that names none grants nothing.
    const permissions =
      claims.scope.length === 0 ? new Set<Permission>() : permissionsFor(entry.roles, claims.scope);
    return sessionPrincipal(entry, "jwt", permissions);
  };
}

function invalidToken(reason: string): HttpProblem {
  return new HttpProblem(
    401,
    "unauthorized",
    "Access token is not valid",
    { reason },
    { "www-authenticate": `Bearer realm="tessera", error="invalid_token"` },
  );
}
