import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import {
  type GrpcObject,
  loadPackageDefinition,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { TlsMaterial } from "../../wiring/startup-secrets.ts";
import type { Authenticate } from "../http/authenticate.ts";
import { unauthorized } from "../http/problem.ts";
import { reportProblem, toRpcProblem } from "../rpc/rpc-problem.ts";
import {
  type OperationName,
  operationParams,
  type RpcCaller,
  type SessionOperations,
} from "../rpc/session-operations.ts";
import { bearerToken } from "../session-ops/bearer-token.ts";
import { restParams, sessionMessage } from "./messages.ts";
import { toGrpcError } from "./status.ts";

export const PROTO_PATH = fileURLToPath(new URL("../../../proto/tessera/v1/sessions.proto", import.meta.url));

/** proto-loader options: REST's snake_case names, int64 as numbers, unset fields left undefined. */
export const PROTO_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: false } as const;

const SHUTDOWN_GRACE_MS = 2_000;

export type GrpcServerDeps = {
  operations: SessionOperations;
  authenticate: Authenticate;
  logger: Logger;
  host: string;
  port: number;
  /** The HTTP server's certificate and key: the same TLS, or plaintext (with a warning) without. */
  tls: TlsMaterial | undefined;
  maxMessageBytes: number;
};

export type GrpcServer = { port: number; close(): Promise<void> };

type Message = Record<string, unknown>;
type Handler = (call: ServerUnaryCall<Message, Message>, callback: sendUnaryData<Message>) => void;

/** The proto's `tessera.v1.Sessions` service definition. */
export function sessionsServiceDefinition(): ServiceDefinition {
  const loaded = loadPackageDefinition(loadSync(PROTO_PATH, PROTO_OPTIONS));
  const v1 = (loaded.tessera as GrpcObject).v1 as GrpcObject;
  return (v1.Sessions as unknown as { service: ServiceDefinition }).service;
}

/**
 * `tessera.v1.Sessions` on its own port (TESSERA_GRPC_PORT): each RPC authenticates from the call's
 * metadata with REST's authenticator and runs the same session operation as its REST route.
 */
export async function startGrpcServer(deps: GrpcServerDeps): Promise<GrpcServer> {
  const server = new Server({
    "grpc.max_receive_message_length": deps.maxMessageBytes,
    // An idle client's connection is closed (it reconnects transparently on its next call).
    "grpc.max_connection_idle_ms": 300_000,
  });
  const { operations } = deps;

  const unary =
    <N extends OperationName>(
      name: N,
      fields: readonly string[],
      encode: (result: Awaited<ReturnType<SessionOperations[N]>>) => Message,
      options: {
        anonymous?: boolean;
        /** Params read from the call's metadata (REST's headers): metadata name → param name. */
        metadataParams?: Readonly<Record<string, string>>;
      } = {},
    ): Handler =>
    (call, callback) => {
      const caller = callerOf(call);
      const route = `Sessions/${name}`;
      run()
        .then((result) => callback(null, result))
        .catch((error) => {
          const problem = toRpcProblem(error);
          reportProblem(deps.logger, caller, route, error, problem);
          callback(toGrpcError(problem));
        });

      async function run(): Promise<Message> {
        const params = operationParams[name].parse({
          ...restParams(call.request, fields),
          ...metadataParams(call, options.metadataParams),
        });
        if (!options.anonymous) {
          caller.principal = await deps.authenticate(requestOf(call, caller));
          if (!caller.principal) throw unauthorized();
        }
        // biome-ignore lint/suspicious/noExplicitAny: params were parsed by this operation's own schema
        const operation = operations[name] as (c: RpcCaller, p: any) => Promise<never>;
        return encode(await operation(caller, params));
      }
    };

  // gRPC's headers: a retried write carries REST's Idempotency-Key as `idempotency-key` metadata.
  const KEYED = { metadataParams: { "idempotency-key": "idempotency_key" } };
  const implementation: UntypedServiceImplementation = {
    Validate: unary(
      "validate",
      ["token", "client_ip", "user_agent", "jwt"],
      (answer) =>
        answer.valid
          ? {
              valid: true,
              session: sessionMessage(answer.session),
              user: answer.user,
              partial_view: "partial_view" in answer && answer.partial_view === true,
            }
          : { valid: false, reason: answer.reason },
      { anonymous: true },
    ),
    Get: unary("get", ["id"], (view) => sessionMessage(view)),
    List: unary("list", ["status", "limit", "cursor", "user_id"], (page) => ({
      sessions: page.sessions.map(sessionMessage),
      total: page.total,
      ...(page.next_cursor === null ? {} : { next_cursor: page.next_cursor }),
      read_model_position: page.read_model.position,
      read_model_behind: page.read_model.behind,
    })),
    Renew: unary(
      "renew",
      ["id", "ttl_seconds"],
      (renewed) => ({ session: sessionMessage(renewed.session) }),
      KEYED,
    ),
    Invalidate: unary(
      "invalidate",
      ["id"],
      (ended) => ({ session: sessionMessage(ended.session), end_reason: ended.end_reason }),
      KEYED,
    ),
    Create: unary(
      "create",
      [
        "user_id",
        "username",
        "roles",
        "groups",
        "kind",
        "ttl_seconds",
        "idle_timeout_seconds",
        "metadata_json",
        "client",
      ],
      (created) => ({
        session: sessionMessage(created.session),
        token: created.token,
        idempotent_replayed: created.idempotent_replayed,
      }),
      KEYED,
    ),
    RevokeAll: unary(
      "revokeAll",
      ["user_id", "except"],
      (revoked) => ({ count: revoked.count, user_id: revoked.user_id }),
      KEYED,
    ),
  };
  server.addService(sessionsServiceDefinition(), implementation);

  const credentials = deps.tls
    ? ServerCredentials.createSsl(
        deps.tls.ca ?? null,
        [{ private_key: deps.tls.key, cert_chain: deps.tls.cert }],
        false,
      )
    : ServerCredentials.createInsecure();
  if (!deps.tls)
    deps.logger.warn(
      "Serving plaintext gRPC: fine for local single-user use, never for multi-user deployments",
    );
  const host = deps.host.includes(":") ? `[${deps.host}]` : deps.host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${deps.port}`, credentials, (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  deps.logger.info({ port, tls: deps.tls !== undefined }, "tessera gRPC listening");

  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        // Calls in progress may finish; whatever is still open after the grace period is cut.
        const force = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };

  function callerOf(call: ServerUnaryCall<Message, Message>): RpcCaller {
    const userAgent = firstString(call.metadata.get("user-agent"));
    const traceparent = firstString(call.metadata.get("traceparent"));
    return {
      principal: undefined,
      facts: { ip: peerIp(call.getPeer()), userAgent },
      correlationId: randomUUID(),
      source: "grpc",
      traceparent,
      bearer: bearerToken(firstString(call.metadata.get("authorization"))),
    };
  }
}

/**
 * REST's authenticator reads a request's headers and ip only (authenticate.ts and its Bearer
 * authenticators): the call's metadata stands in for the headers, so credentials are judged identically.
 */
function requestOf(call: ServerUnaryCall<Message, Message>, caller: RpcCaller): FastifyRequest {
  const headers: Record<string, string> = {};
  for (const name of ["authorization", "x-admin-key", "user-agent"]) {
    const value = firstString(call.metadata.get(name));
    if (value !== undefined) headers[name] = value;
  }
  return { headers, ip: caller.facts.ip } as unknown as FastifyRequest;
}

/**
 * The params an operation reads from metadata. A name given more than once is folded as HTTP folds a
 * repeated header (", "-joined), which no key's rule accepts: refused, as REST refuses it.
 */
function metadataParams(
  call: ServerUnaryCall<Message, Message>,
  names: Readonly<Record<string, string>> | undefined,
): Message {
  const params: Message = {};
  for (const [name, param] of Object.entries(names ?? {})) {
    const values = call.metadata.get(name).map((value) => value.toString());
    if (values.length > 0) params[param] = values.join(", ");
  }
  return params;
}

function firstString(values: Array<string | Buffer>): string | undefined {
  const value = values[0];
  return typeof value === "string" ? value : undefined;
}

/** `ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000` → the address, as Fastify's request.ip gives it. */
function peerIp(peer: string): string | undefined {
  const match = /^(?:ipv4:|ipv6:)?\[?([^\]]+?)\]?:\d+$/.exec(peer);
  return match?.[1];
}
