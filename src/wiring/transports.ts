import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { startGrpcServer } from "../adapters/grpc/server.ts";
import type { Authenticate } from "../adapters/http/authenticate.ts";
import { createSessionOperations, type SessionOperationsDeps } from "../adapters/rpc/session-operations.ts";
import { DEFAULT_WS_LIMITS } from "../adapters/ws/connection.ts";
import { websocketRoutes } from "../adapters/ws/plugin.ts";
import type { ValidationReplica } from "../app/ports.ts";
import { createSessionEndWatch } from "../app/session-end-watch.ts";
import type { Config } from "../config.ts";
import type { TlsMaterial } from "./startup-secrets.ts";

export type TransportDeps = SessionOperationsDeps & { authenticate: Authenticate };

/**
 * The transports beside REST (docs/transports.md): WebSocket JSON-RPC on the HTTP server (`/v1/ws`) and
 * gRPC on TESSERA_GRPC_PORT, both thin adapters over the session operations REST runs. Used by
 * application.ts in three steps: `watchEndings` decorates the replica before anything reads it, `bind`
 * hands over the services once they exist, then the WebSocket plugin joins the HTTP app and `startGrpc`
 * opens the gRPC listener (when configured) once the app is built.
 */
export function createTransports(config: Config, logger: Logger) {
  const endWatch = createSessionEndWatch();
  let bound: TransportDeps | undefined;
  let grpcPort: number | undefined;
  const deps = () => {
    if (!bound) throw new Error("transports used before bind()");
    return bound;
  };

  return {
    /** Lets open WebSockets hear of their session's end, from this instance or any other. */
    watchEndings: (replica: ValidationReplica) => endWatch.decorate(replica),

    bind(services: TransportDeps) {
      bound = services;
    },

    /** The `/v1/ws` route, in a Fastify context of its own. */
    async websocket(app: FastifyInstance) {
      const services = deps();
      await websocketRoutes({
        operations: createSessionOperations(services),
        authenticate: services.authenticate,
        validator: services.validator,
        endWatch,
        clock: services.clock,
        logger,
        limits: { ...DEFAULT_WS_LIMITS, maxMessageBytes: config.bodyLimitBytes },
      })(app);
    },

    /** Opens the gRPC listener when TESSERA_GRPC_PORT is set; returns its close (a no-op when off). */
    async startGrpc(tls: TlsMaterial | undefined): Promise<() => Promise<void>> {
      if (config.grpcPort === undefined) return async () => {};
      const services = deps();
      const server = await startGrpcServer({
        operations: createSessionOperations(services),
        authenticate: services.authenticate,
        logger,
        host: config.host,
        port: config.grpcPort,
        tls,
        maxMessageBytes: config.bodyLimitBytes,
      });
      grpcPort = server.port;
      return () => server.close();
    },

    /** The bound gRPC port (TESSERA_GRPC_PORT=0 picks one), undefined while off. */
    get grpcPort() {
      return grpcPort;
    },
  };
}

export type Transports = ReturnType<typeof createTransports>;
