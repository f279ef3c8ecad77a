import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";

/**
 * A stand-in identity provider for tests: a real HTTP server on 127.0.0.1 serving a JWKS with a freshly
 * generated ES256 key, and helpers that sign access and back-channel logout tokens with it.
 */

export const IDP_AUDIENCE = "tessera-test";

export type TestIdp = {
  issuer: string;
  jwksUrl: string;
  /** How many times the JWKS was fetched (to see the cache at work). */
  readonly fetches: number;
  env: Record<string, string>;
  accessToken(claims: JWTPayload & { sub: string }, options?: SignOptions): Promise<string>;
  logoutToken(claims: JWTPayload, options?: SignOptions): Promise<string>;
  /** A token with the same claims signed by a key the JWKS does not hold. */
  foreignToken(claims: JWTPayload): Promise<string>;
  close(): Promise<void>;
};

type SigningKey = Parameters<SignJWT["sign"]>[0];

export type SignOptions = { typ?: string | undefined; omit?: string[]; expiresIn?: number };

export async function startTestIdp(): Promise<TestIdp> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const foreign = await generateKeyPair("ES256");
  const kid = "test-key-1";
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
  let fetches = 0;
  const server: Server = createServer((request, response) => {
    if (request.url === "/jwks") {
      fetches++;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ keys: [jwk] }));
      return;
    }
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}/realms/test`;
  const jwksUrl = `http://127.0.0.1:${port}/jwks`;

  async function sign(key: SigningKey, claims: JWTPayload, options: SignOptions, defaults: JWTPayload) {
    const now = Math.floor(Date.now() / 1000);
    const payload: JWTPayload = {
      iss: issuer,
      aud: IDP_AUDIENCE,
      iat: now,
      exp: now + (options.expiresIn ?? 300),
      ...defaults,
      ...claims,
    };
    for (const name of options.omit ?? []) delete payload[name];
    const header: { alg: string; kid: string; typ?: string } = { alg: "ES256", kid };
    if (options.typ !== undefined) header.typ = options.typ;
    return new SignJWT(payload).setProtectedHeader(header).sign(key);
  }

  return {
    issuer,
    jwksUrl,
    get fetches() {
      return fetches;
    },
    env: {
      TESSERA_IDP_ISSUER: issuer,
      TESSERA_IDP_JWKS_URL: jwksUrl,
      TESSERA_IDP_AUDIENCE: IDP_AUDIENCE,
    },
    accessToken: (claims, options = {}) => sign(privateKey, claims, options, { jti: randomUUID() }),
    logoutToken: (claims, options = {}) =>
      sign(
        privateKey,
        claims,
        { typ: "logout+jwt", ...options },
        {
          jti: randomUUID(),
          events: { "http://schemas.openid.net/event/backchannel-logout": {} },
        },
      ),
    foreignToken: (claims) => sign(foreign.privateKey, claims, {}, { jti: randomUUID() }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An unsecured JWT (`alg: none`): what an attacker sends hoping the receiver skips the signature. */
export function unsecuredToken(payload: JWTPayload): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "none", typ: "logout+jwt" })}.${encode(payload)}.`;
}
