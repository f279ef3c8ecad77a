import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import { type Authenticate, requestFacts } from "../http/authenticate.ts";
import { createHostGuard, type HostGuardOptions } from "./host-guard.ts";
import { createMcpServer } from "./mcp-server.ts";
import { createMcpSessions } from "./mcp-sessions.ts";
import { alsoAtSessionUrl } from "./session-url.ts";
import { type McpToolDeps, mcpCommandContext, type ToolCaller } from "./tool-deps.ts";

export type McpEndpointDeps = McpToolDeps & {
  authenticate: Authenticate;
  hostGuard: HostGuardOptions;
  /** Absolute lifetime of an MCP session (idle expiry comes from the policy). */
  sessionTtlSeconds: number;
};

// JSON-RPC error codes the SDK's own transport uses for the same HTTP failures.
const SERVER_ERROR = -32000;
const SESSION_NOT_FOUND = -32001;

/**
 * Streamable HTTP at /mcp. The SDK transport runs in stateless mode, one server + transport per request;
 * the Mcp-Session-Id lifecycle is ours, on top: initialize opens a Tessera session of kind `mcp`, every
 * other request resolves the id through the shared validator, DELETE ends it. Nothing about a session
 * lives in this process, so any instance answers any request (no sticky routing).
 */
export function createMcpPlugin(deps: McpEndpointDeps) {
  const guard = createHostGuard(deps.hostGuard);
  const sessions = createMcpSessions(deps);

  function rpcError(reply: FastifyReply, status: number, code: number, message: string) {
    return reply
      .code(status)
      .type("application/json")
      .send({ jsonrpc: "2.0", error: { code, message }, id: null });
  }

  /** Host/Origin, then credentials. Returns the caller, or undefined once a refusal has been sent. */
  async function admit(request: FastifyRequest, reply: FastifyReply): Promise<ToolCaller | undefined> {
    const verdict = guard({ host: request.headers.host, origin: request.headers.origin });
    if (!verdict.ok) {
      request.log.warn({ nist: "sc-7", reason: verdict.reason }, "mcp request refused");
      await rpcError(reply, 403, SERVER_ERROR, `Forbidden: ${verdict.reason}`);
      return undefined;
    }
    const principal: Principal | undefined = await deps.authenticate(request);
    if (!principal) {
      reply.header("www-authenticate", 'Bearer realm="tessera"');
      await rpcError(reply, 401, SERVER_ERROR, "Unauthorized: send Authorization: Bearer <token>");
      return undefined;
    }
    const traceparent = request.headers.traceparent;
    return {
      principal,
      facts: requestFacts(request),
      correlationId: request.id,
      traceparent: typeof traceparent === "string" ? traceparent : undefined,
    };
  }

  function sessionHeader(request: FastifyRequest): string | undefined {
    const value = request.headers["mcp-session-id"];
    return typeof value === "string" && value !== "" ? value : undefined;
  }

  async function serve(caller: ToolCaller, request: FastifyRequest): Promise<Response> {
    const server = createMcpServer(deps, caller, { onlyTool: calledTool(request.body) });
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    await server.connect(transport);
    try {
      return await transport.handleRequest(webRequest(request), { parsedBody: request.body });
    } finally {
      await server.close();
    }
  }

  /** A body Fastify refused to parse (not JSON: no parser takes it) is the transport's 415 too. */
  function bodyRefused(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
    if (error.code !== "FST_ERR_CTP_INVALID_MEDIA_TYPE") throw error;
    return unsupportedMediaType(reply);
  }

  function unsupportedMediaType(reply: FastifyReply) {
    return rpcError(
      reply,
      415,
      SERVER_ERROR,
      "Unsupported Media Type: Content-Type must be application/json",
    );
  }

  return async function mcpPlugin(fastify: FastifyInstance) {
    // Every route below also answers at the session URL, /mcp/u/<token> (session-url.ts).
    const app = alsoAtSessionUrl(fastify);
    app.post("/mcp", { errorHandler: bodyRefused }, async (request, reply) => {
      // First, as the transport itself checks it: a body that is not JSON is not a message (and an
      // initialize sent as text/plain must not read as "a request without Mcp-Session-Id").
      if (!isJson(request)) return unsupportedMediaType(reply);
      const caller = await admit(request, reply);
      if (!caller) return reply;
      const context = (): CommandContext => mcpCommandContext(caller, deps.ids);
      let opened: { token: string; sessionId: string } | undefined;
      if (isInitializeRequest(request.body)) {
        // Only open a session the transport is going to accept; otherwise its 406/415 goes out alone.
        if (transportAccepts(request))
          opened = await sessions.open(caller.principal, caller.facts, context());
      } else {
        const token = sessionHeader(request);
        if (token === undefined) {
          return rpcError(reply, 400, SERVER_ERROR, "Bad Request: Mcp-Session-Id header is required");
        }
        const resolved = await sessions.resolve(token, caller.principal, caller.facts, context());
        if (!resolved.ok) {
          request.log.info({ reason: resolved.reason }, "mcp session not usable");
          return rpcError(reply, 404, SESSION_NOT_FOUND, "Session not found");
        }
      }
      // An initialize that does not succeed must not leave a live session nobody holds the id of.
      const abandon = async () => {
        if (opened) await sessions.end(opened.sessionId, context()).catch(() => undefined);
      };
      let response: Response;
      try {
        response = await serve(caller, request);
      } catch (error) {
        await abandon();
        throw error;
      }
      if (opened && response.ok) reply.header("mcp-session-id", opened.token);
      else await abandon();
      return reply.send(response);
    });

    // Nothing is ever pushed outside a request (no per-session state to push from), so no SSE stream:
    // the transport spec's answer for that is 405.
    app.get("/mcp", async (request, reply) => {
      const verdict = guard({ host: request.headers.host, origin: request.headers.origin });
      if (!verdict.ok) return rpcError(reply, 403, SERVER_ERROR, `Forbidden: ${verdict.reason}`);
      reply.header("allow", "POST, DELETE");
      return rpcError(reply, 405, SERVER_ERROR, "Method not allowed: this server offers no SSE stream");
    });

    app.delete("/mcp", async (request, reply) => {
      const caller = await admit(request, reply);
      if (!caller) return reply;
      const token = sessionHeader(request);
      if (token === undefined) {
        return rpcError(reply, 400, SERVER_ERROR, "Bad Request: Mcp-Session-Id header is required");
      }
      const context = mcpCommandContext(caller, deps.ids);
      const resolved = await sessions.resolve(token, caller.principal, caller.facts, context, {
        checkClaims: false,
      });
      if (!resolved.ok) return rpcError(reply, 404, SESSION_NOT_FOUND, "Session not found");
      await sessions.end(resolved.entry.sessionId, context);
      return reply.code(204).send();
    });
  };
}

/** The tool a single `tools/call` message names, if that is what the body is. */
function calledTool(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const message = body as { method?: unknown; params?: { name?: unknown } };
  return message.method === "tools/call" && typeof message.params?.name === "string"
    ? message.params.name
    : undefined;
}

/** Mirrors the transport's own POST preconditions (Accept both types, JSON body). */
function transportAccepts(request: FastifyRequest): boolean {
  const accept = request.headers.accept ?? "";
  return accept.includes("application/json") && accept.includes("text/event-stream") && isJson(request);
}

function isJson(request: FastifyRequest): boolean {
  return (request.headers["content-type"] ?? "").toLowerCase().startsWith("application/json");
}

/**
 * The SDK transport speaks Web Request/Response; Fastify has already parsed the body (passed separately)
 * and sends the Response back itself. The URL is informational only, so the Host header is not trusted.
 */
function webRequest(request: FastifyRequest): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue;
    headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  return new Request(`http://tessera.invalid${request.url}`, { method: request.method, headers });
}
