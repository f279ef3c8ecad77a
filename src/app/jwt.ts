import { decodeJwt, decodeProtectedHeader, errors, type JWTPayload, jwtVerify, SignJWT } from "jose";
import type { Clock, IdGenerator } from "../domain/ports.ts";
import type { SigningKey, VerificationKey } from "./jwt-keys.ts";

/**
 * Access tokens (DESIGN §2): short-lived JWTs (RFC 9068 profile, `typ: at+jwt`) naming the session they
 * belong to (`sid`). A valid signature is necessary, not sufficient: the authenticator also requires the
 * session to be active at the moment of use, which is what makes revocation immediate.
 */

export type AccessTokenClaims = {
  sub: string;
  sid: string;
  jti: string;
  scope: string[];
  roles: string[];
  groups: string[];
  username: string;
  clientId: string | undefined;
  iat: number;
  exp: number;
};

export type IssuedAccessToken = { token: string; jti: string; expiresIn: number; expiresAt: number };

export type JwtRejection =
  | "malformed"
  | "unknown_key"
  | "alg_not_allowed"
  | "bad_signature"
  | "expired"
  | "not_yet_valid"
  | "wrong_issuer"
  | "wrong_audience"
  | "wrong_type"
  | "invalid_claims";

export class JwtRejected extends Error {
  constructor(readonly reason: JwtRejection) {
    super(`Access token rejected: ${reason}`);
    this.name = "JwtRejected";
  }
}

const TOKEN_TYPE = "at+jwt";
/** Instances' clocks differ a little; a token minted a moment "in the future" elsewhere is still fine. */
const CLOCK_TOLERANCE_SECONDS = 5;

export type AccessTokenDeps = {
  key: SigningKey;
  /**
   * Verify-only keys (TESSERA_JWT_VERIFY_KEYS): tokens signed by them are accepted and they are published
   * in the JWKS, so a signing key can be rotated without refusing the tokens in flight (docs/auth.md).
   */
  verifyKeys?: readonly VerificationKey[];
  issuer: string;
  audience: string;
  ttlSeconds: number;
  clock: Clock;
  ids: IdGenerator;
  /** Verified tokens remembered so a repeat costs a Map lookup, not a signature check. */
  cacheSize?: number;
};

export function createAccessTokens(deps: AccessTokenDeps) {
  const { key, issuer, audience, clock } = deps;
  const cacheSize = deps.cacheSize ?? 10_000;
  const verifyKeys = deps.verifyKeys ?? [];
  // The header's kid picks the key; the signing key is always one of them.
  const keysByKid = new Map<string, VerificationKey>([key, ...verifyKeys].map((k) => [k.kid, k]));
  if (keysByKid.size !== 1 + verifyKeys.length) throw new Error("access-token keys must have distinct kids");
  const algorithms = [...new Set([...keysByKid.values()].map((k) => k.alg))];
  // Signing key first: relying parties that take the first key get the one new tokens are signed with.
  const publishedKeys = [key, ...verifyKeys].map((k) => k.publicJwk);
  // A token string always verifies the same way; only time changes the verdict, and exp is rechecked on
  // every hit. Session validity is never cached here (the authenticator checks it per request).
  const verified = new Map<string, AccessTokenClaims>();

  function remember(token: string, claims: AccessTokenClaims) {
    if (verified.size >= cacheSize) {
      const oldest = verified.keys().next().value;
      if (oldest !== undefined) verified.delete(oldest);
    }
    verified.set(token, claims);
  }

  return {
    kid: key.kid,
    alg: key.alg,
    issuer,
    audience,

    jwks() {
      return { keys: [...publishedKeys] };
    },

    async issue(input: {
      userId: string;
      username: string;
      sessionId: string;
      scope: string[];
      roles: string[];
      groups: string[];
      clientId?: string | undefined;
      /** The session's own expiry (epoch ms): an access token never outlives its session. */
      notAfter: number;
    }): Promise<IssuedAccessToken> {
      const iat = Math.floor(clock.now() / 1000);
      const exp = Math.max(iat + 1, Math.min(iat + deps.ttlSeconds, Math.floor(input.notAfter / 1000)));
      const jti = deps.ids.uuidv7();
      const token = await new SignJWT({
        sid: input.sessionId,
        scope: input.scope.join(" "),
        roles: input.roles,
        groups: input.groups,
        preferred_username: input.username,
        ...(input.clientId === undefined ? {} : { client_id: input.clientId }),
      })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: TOKEN_TYPE })
        .setIssuer(issuer)
        .setAudience(audience)
        .setSubject(input.userId)
        .setJti(jti)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key.privateKey);
      return { token, jti, expiresIn: exp - iat, expiresAt: exp * 1000 };
    },

    /**
     * Is this JWT one of ours (one of our kids, or our issuer)? Decides whether this verifier judges it or
     * leaves it to others (e.g. an IdP's tokens); it proves nothing, the signature check does.
     */
    isOwn(token: string): boolean {
      if (verified.has(token)) return true;
      try {
        const { kid } = decodeProtectedHeader(token);
        return (kid !== undefined && keysByKid.has(kid)) || decodeJwt(token).iss === issuer;
      } catch {
        return false;
      }
    },

    async verify(token: string): Promise<AccessTokenClaims> {
      const nowSeconds = clock.now() / 1000;
      const cached = verified.get(token);
      if (cached) {
        if (nowSeconds >= cached.exp + CLOCK_TOLERANCE_SECONDS) throw new JwtRejected("expired");
        return cached;
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(
          token,
          (header) => {
            const known = header.kid === undefined ? undefined : keysByKid.get(header.kid);
            if (!known) throw new JwtRejected("unknown_key");
            // `algorithms` admits every key's alg; each key still verifies only with its own.
            if (header.alg !== known.alg) throw new JwtRejected("alg_not_allowed");
            return known.publicKey;
          },
          {
            issuer,
            audience,
            algorithms,
            typ: TOKEN_TYPE,
            currentDate: new Date(clock.now()),
            clockTolerance: CLOCK_TOLERANCE_SECONDS,
            requiredClaims: ["sub", "sid", "jti", "iat", "exp"],
          },
        ));
      } catch (error) {
        throw new JwtRejected(rejectionOf(error));
      }
      const claims = claimsOf(payload);
      if (!claims) throw new JwtRejected("invalid_claims");
      remember(token, claims);
      return claims;
    },
  };
}

export type AccessTokens = ReturnType<typeof createAccessTokens>;

function rejectionOf(error: unknown): JwtRejection {
  if (error instanceof JwtRejected) return error.reason;
  if (error instanceof errors.JWTExpired) return "expired";
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "nbf":
      case "iat":
        return "not_yet_valid";
      case "iss":
        return "wrong_issuer";
      case "aud":
        return "wrong_audience";
      case "typ":
        return "wrong_type";
      default:
        return "invalid_claims";
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return "alg_not_allowed";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "bad_signature";
  return "malformed";
}

const stringList = (value: unknown): string[] | undefined =>
  Array.isArray(value) && value.every((item) => typeof item === "string") ? value : undefined;

function claimsOf(payload: JWTPayload): AccessTokenClaims | undefined {
  const { sub, sid, jti, iat, exp } = payload;
  const scope = typeof payload.scope === "string" ? payload.scope.split(" ").filter(Boolean) : undefined;
  const roles = stringList(payload.roles);
  const groups = stringList(payload.groups);
  if (
    typeof sub !== "string" ||
    typeof sid !== "string" ||
    typeof jti !== "string" ||
    typeof iat !== "number" ||
    typeof exp !== "number" ||
    scope === undefined ||
    roles === undefined ||
    groups === undefined
  ) {
    return undefined;
  }
  const clientId = payload.client_id;
  return {
    sub,
    sid,
    jti,
    iat,
    exp,
    scope,
    roles,
    groups,
    username: typeof payload.preferred_username === "string" ? payload.preferred_username : sub,
    clientId: typeof clientId === "string" ? clientId : undefined,
  };
}
