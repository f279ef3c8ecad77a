import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JWSAlgorithm,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import type { Claims } from "../domain/events.ts";
import type { Clock } from "../domain/ports.ts";
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from "../domain/storable-text.ts";
import { normalizeClaims } from "../domain/user-decider.ts";

/**
 * Trusting an external identity provider: its access tokens (JWTs signed with keys from its JWKS URL) and
 * its OIDC back-channel logout tokens. Keys are fetched with jose's remote JWKS, cached, and refetched on
 * an unknown `kid` (at most once per cooldown), so a key rotation at the IdP needs no restart.
 */

export type IdpSettings = {
  issuer: string;
  jwksUrl: string;
  audience: string;
  /** Where roles and groups sit in the IdP's tokens; a dotted path such as `realm_access.roles`. */
  rolesClaim: string;
  groupsClaim: string;
};

/** What Tessera takes from a verified IdP access token. Instants are epoch ms. */
export type IdpIdentity = {
  issuer: string;
  subject: string;
  username: string;
  claims: Claims;
  /** OIDC `sid`: the IdP's session, shared by every token of one sign-in. */
  idpSessionId: string | undefined;
  issuedAt: number;
  expiresAt: number;
};

/** A verified back-channel logout token (OIDC Back-Channel Logout 1.0 §2.4). */
export type LogoutClaims = {
  issuer: string;
  subject: string | undefined;
  idpSessionId: string | undefined;
  jti: string;
  expiresAt: number;
};

export type IdpTokenProblem = "malformed" | "expired" | "invalid";

export class IdpTokenError extends Error {
  constructor(
    readonly problem: IdpTokenProblem,
    message: string,
  ) {
    super(message);
    this.name = "IdpTokenError";
  }
}

export const BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout";

/** Asymmetric algorithms only: an HMAC key would be the JWKS's public material, and `none` is never a signature. */
const ALGORITHMS: JWSAlgorithm[] = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];

/** `typ` values a logout token may carry: explicitly typed (RECOMMENDED by §2.4) or the generic JWT. */
const LOGOUT_TYPES = new Set(["logout+jwt", "application/logout+jwt", "jwt", "application/jwt"]);
/** Access tokens that say they are something else (a logout token, an ID token) are refused as Bearers. */
const REFUSED_ACCESS_TYPES = new Set(["logout+jwt", "application/logout+jwt"]);

const CLOCK_TOLERANCE_SECONDS = 30;

export function createIdpVerifier(
  settings: IdpSettings,
  deps: { clock: Clock; keys?: JWTVerifyGetKey | undefined },
) {
  const keys =
    deps.keys ??
    createRemoteJWKSet(new URL(settings.jwksUrl), {
      cacheMaxAge: 10 * 60_000,
      cooldownDuration: 30_000,
      timeoutDuration: 5_000,
    });
  const issuer = settings.issuer;

  async function verify(token: string, requiredClaims: string[]) {
    try {
      return await jwtVerify(token, keys, {
        issuer,
        audience: settings.audience,
        algorithms: ALGORITHMS,
        currentDate: new Date(deps.clock.now()),
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims,
      });
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw new IdpTokenError("expired", "The IdP token has expired");
      if (error instanceof errors.JOSEError)
        throw new IdpTokenError("invalid", `IdP token refused: ${error.code}`);
      throw error;
    }
  }

  return {
    issuer,

    /**
     * Does this Bearer claim to come from our IdP? Decided on the unverified `iss` so other JWT
     * authenticators (Tessera's own access tokens) get every other token; the claim is verified next.
     */
    isIdpToken(token: string): boolean {
      if (token.split(".").length !== 3) return false;
      try {
        return decodeJwt(token).iss === issuer;
      } catch {
        return false;
      }
    },

    async verifyAccessToken(token: string): Promise<IdpIdentity> {
      const { payload, protectedHeader } = await verify(token, ["sub", "iat", "exp"]);
      if (
        typeof protectedHeader.typ === "string" &&
        REFUSED_ACCESS_TYPES.has(protectedHeader.typ.toLowerCase())
      ) {
        throw new IdpTokenError("invalid", "A logout token is not an access token");
      }
      const subject = payload.sub as string;
      const identity: IdpIdentity = {
        issuer,
        subject,
        username: firstString(payload.preferred_username, payload.email, payload.name) ?? subject,
        claims: normalizeClaims({
          roles: stringList(claimAt(payload, settings.rolesClaim)),
          groups: stringList(claimAt(payload, settings.groupsClaim)),
        }),
        idpSessionId: typeof payload.sid === "string" && payload.sid !== "" ? payload.sid : undefined,
        issuedAt: (payload.iat as number) * 1000,
        expiresAt: (payload.exp as number) * 1000,
      };
      requireStorable("sub", [identity.subject]);
      requireStorable("username", [identity.username]);
      requireStorable("sid", [identity.idpSessionId]);
      requireStorable(settings.rolesClaim, identity.claims.roles);
      requireStorable(settings.groupsClaim, identity.claims.groups);
      return identity;
    },

    /** Validation of a logout token as OIDC Back-Channel Logout 1.0 §2.6 requires. */
    async verifyLogoutToken(token: string): Promise<LogoutClaims> {
      if (token.split(".").length !== 3) {
        // Five parts would be an encrypted token; we publish no encryption key, so none can be for us.
        throw new IdpTokenError("malformed", "logout_token must be a signed JWT");
      }
      let typ: unknown;
      try {
        typ = decodeProtectedHeader(token).typ;
      } catch {
        throw new IdpTokenError("malformed", "logout_token is not a JWT");
      }
      if (typ !== undefined && (typeof typ !== "string" || !LOGOUT_TYPES.has(typ.toLowerCase()))) {
        throw new IdpTokenError("invalid", "logout_token has an unexpected typ");
      }
      const { payload } = await verify(token, ["iat", "exp", "jti", "events"]);
      const events = payload.events;
      if (
        typeof events !== "object" ||
        events === null ||
        Array.isArray(events) ||
        !isJsonObject((events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT])
      ) {
        throw new IdpTokenError("invalid", `logout_token events must contain ${BACKCHANNEL_LOGOUT_EVENT}`);
      }
      if ("nonce" in payload) throw new IdpTokenError("invalid", "logout_token must not contain a nonce");
      const subject = nonEmptyString(payload.sub);
      const idpSessionId = nonEmptyString(payload.sid);
      if (subject === undefined && idpSessionId === undefined) {
        throw new IdpTokenError("invalid", "logout_token must contain sub, sid or both");
      }
      const jti = nonEmptyString(payload.jti);
      if (jti === undefined) throw new IdpTokenError("invalid", "logout_token must contain a jti");
      requireStorable("sub", [subject]);
      requireStorable("sid", [idpSessionId]);
      return { issuer, subject, idpSessionId, jti, expiresAt: (payload.exp as number) * 1000 };
    },
  };
}

export type IdpVerifier = ReturnType<typeof createIdpVerifier>;

function claimAt(payload: JWTPayload, path: string): unknown {
  // A claim whose name itself contains dots (e.g. a namespaced URL) wins over a path.
  if (path in payload) return payload[path];
  let value: unknown = payload;
  for (const part of path.split(".")) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function stringList(value: unknown): string[] {
  if (typeof value === "string") return value === "" ? [] : [value];
  if (!Array.isArray(value)) return [];
  return value.filter((item): item is string => typeof item === "string" && item !== "");
}

function firstString(...values: unknown[]): string | undefined {
  for (const value of values) if (typeof value === "string" && value !== "") return value;
  return undefined;
}

/**
 * A signed token is still input: its claims reach events and lookups, and text Postgres cannot store
 * would fail there (src/domain/storable-text.ts). Such a token is refused like any other invalid one.
 */
function requireStorable(claim: string, values: ReadonlyArray<string | undefined>): void {
  for (const value of values) {
    if (value !== undefined && !isStorableText(value)) {
      throw new IdpTokenError("invalid", `The token's ${claim} claim ${UNSTORABLE_TEXT_MESSAGE}`);
    }
  }
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function isJsonObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
