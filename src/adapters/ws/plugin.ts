import fastifyWebsocket from "@fastify/websocket";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { WebSocket, WebSocketServer } from "ws";
import type { Principal } from "../../app/access.ts";
import type { Authenticate } from "../http/authenticate.ts";
import { requestFacts } from "../http/authenticate.ts";
import { HttpProblem, unauthorized } from "../http/problem.ts";
import { bearerToken } from "../session-ops/bearer-token.ts";
import { CLOSE, type ConnectionDeps, serveConnection } from "./connection.ts";

/**
 * Browsers cannot set headers on a WebSocket: such a client offers `tessera.v1` plus
 * `tessera.bearer.<token>` as subprotocols instead of `Authorization` (docs/transports.md says why this
 * and not a query parameter). The server only ever selects `tessera.v1`, so the token is never echoed.
 */
export const WS_PROTOCOL = "tessera.v1";
const BEARER_PROTOCOL_PREFIX = "tessera.bearer.";
/** How long a closing connection may take to answer the close handshake at shutdown. */
const SHUTDOWN_GRACE_MS = 1_000;

export type WebsocketDeps = ConnectionDeps & { authenticate: Authenticate };

type Authenticated = { principal: Principal; bearer: string | undefined };

/**
 * `GET /v1/ws`: JSON-RPC 2.0 over WebSocket, authenticated at the upgrade (401 problem+json and no
 * upgrade otherwise). @fastify/websocket adds hooks to every route of the context it is registered in, so
 * it lives in a context of its own: REST routes keep their hot paths unchanged.
 */
export function websocketRoutes(deps: WebsocketDeps) {
  return async (app: FastifyInstance) => {
    await app.register(async (scope) => {
      await scope.register(fastifyWebsocket, {
        options: {
          maxPayload: deps.limits.maxMessageBytes,
          handleProtocols: (offered: Set<string>) => (offered.has(WS_PROTOCOL) ? WS_PROTOCOL : false),
        },
        preClose: async () => closeAll(scope.websocketServer),
        errorHandler: (error: Error, socket: WebSocket) => {
          deps.logger.warn({ err: error }, "websocket error");
          socket.terminate();
        },
      });
      const authenticated = new WeakMap<FastifyRequest, Authenticated>();
      scope.route({
        method: "GET",
        url: "/v1/ws",
        schema: { hide: true },
        preValidation: async (request) => {
          adoptProtocolBearer(request);
          const principal = await deps.authenticate(request);
          if (!principal) throw unauthorized();
          authenticated.set(request, { principal, bearer: bearerToken(request.headers.authorization) });
        },
        handler: async () => {
          throw new HttpProblem(
            426,
            "invalid_request",
            "Connect with a WebSocket upgrade",
            {},
            { upgrade: "websocket" },
          );
        },
        wsHandler: (socket, request) => {
          const auth = authenticated.get(request);
          if (!auth) {
            socket.close(CLOSE.sessionEnded, "not authenticated");
            return;
          }
          const caller = {
            principal: auth.principal,
            facts: requestFacts(request),
            correlationId: request.id,
            source: "ws" as const,
            bearer: auth.bearer,
          };
          serveConnection(socket, caller, deps, {
            accessTokenExpiresAt:
              auth.principal.kind === "user" && auth.principal.via === "jwt"
                ? jwtExpiry(auth.bearer)
                : undefined,
          });
        },
      });
    });
  };
}

/** The subprotocol form of the Bearer credential, when there is no Authorization header. */
function adoptProtocolBearer(request: FastifyRequest) {
  const offered = request.headers["sec-websocket-protocol"];
  if (request.headers.authorization !== undefined || typeof offered !== "string") return;
  const protocols = offered.split(",").map((protocol) => protocol.trim());
  const bearer = protocols.find((protocol) => protocol.startsWith(BEARER_PROTOCOL_PREFIX));
  if (bearer === undefined) return;
  if (!protocols.includes(WS_PROTOCOL)) {
    throw new HttpProblem(400, "invalid_request", `Offer ${WS_PROTOCOL} with the bearer subprotocol`);
  }
  request.headers.authorization = `Bearer ${bearer.slice(BEARER_PROTOCOL_PREFIX.length)}`;
}

/** The `exp` of an access token already verified by the authenticator (ms), so the socket closes with it. */
function jwtExpiry(token: string | undefined): number | undefined {
  const payload = token?.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** 1001 to every client, then whatever has not finished the close handshake in time is cut. */
async function closeAll(server: WebSocketServer): Promise<void> {
  const clients = [...server.clients];
  for (const client of clients) client.close(CLOSE.goingAway, "server shutting down");
  const deadline = Date.now() + SHUTDOWN_GRACE_MS;
  while (clients.some((client) => client.readyState !== client.CLOSED) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const client of clients) if (client.readyState !== client.CLOSED) client.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
