import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { expect } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders } from "../support/tessera.ts";

/** Helpers for driving /mcp with the SDK's own client over real HTTP. */

export async function listen(tessera: Tessera): Promise<string> {
  return tessera.app.listen({ host: "127.0.0.1", port: 0 });
}

/** A session for `userId` made with the admin key; its tss_ token is what the MCP client authenticates with. */
export async function userSession(
  tessera: Tessera,
  userId: string,
  claims: { roles?: string[]; groups?: string[]; kind?: "api" | "mcp"; ttlSeconds?: number } = {},
) {
  const response = await tessera.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: {
      user_id: userId,
      roles: claims.roles ?? ["user"],
      groups: claims.groups ?? [],
      kind: claims.kind,
      ttl_seconds: claims.ttlSeconds,
    },
  });
  expect(response.statusCode, response.body).toBe(201);
  const body = response.json() as { token: string; session: { id: string } };
  return { token: body.token, sessionId: body.session.id };
}

export type McpConnection = { client: Client; transport: StreamableHTTPClientTransport };

/**
 * Connects an SDK client to `baseUrl`/mcp. Without `sessionId` it initializes (a new MCP session); with one
 * it continues that session without initializing, as a client talking to another instance would.
 */
export async function connectMcp(
  baseUrl: string,
  headers: Record<string, string>,
  sessionId?: string,
): Promise<McpConnection> {
  const transport = new StreamableHTTPClientTransport(new URL("/mcp", baseUrl), {
    requestInit: { headers },
    ...(sessionId === undefined ? {} : { sessionId }),
  });
  const client = new Client({ name: "tessera-test", version: "1.0.0" });
  await client.connect(transport);
  return { client, transport };
}

export const bearerHeaders = (token: string) => ({ authorization: `Bearer ${token}` });

export async function callTool(connection: McpConnection, name: string, args: Record<string, unknown> = {}) {
  return (await connection.client.callTool({ name, arguments: args })) as CallToolResult;
}

/** The structured result of a successful call (and checks the text twin says the same). */
export function structured<T = Record<string, unknown>>(result: CallToolResult): T {
  expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
  const first = result.content[0];
  expect(first?.type).toBe("text");
  if (first?.type === "text") expect(JSON.parse(first.text)).toEqual(result.structuredContent);
  return result.structuredContent as T;
}

/** The `{error, code}` of a tool error. */
export function toolError(result: CallToolResult): { error: string; code: string } {
  expect(result.isError, JSON.stringify(result.content)).toBe(true);
  const first = result.content[0];
  if (first?.type !== "text") throw new Error("tool error without text");
  return JSON.parse(first.text) as { error: string; code: string };
}

export const initializeMessage = (protocolVersion: string) => ({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion, capabilities: {}, clientInfo: { name: "raw-client", version: "1.0.0" } },
});

export const MCP_ACCEPT = {
  accept: "application/json, text/event-stream",
  "content-type": "application/json",
};

/** A raw POST /mcp over real HTTP, for what the SDK client cannot be made to send. */
export async function rawPost(baseUrl: string, headers: Record<string, string>, body: unknown) {
  const response = await fetch(new URL("/mcp", baseUrl), {
    method: "POST",
    headers: { ...MCP_ACCEPT, ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>),
  };
}

/** Runs `action` and returns the HTTP status the SDK client transport failed with. */
export async function httpFailure(action: () => Promise<unknown>): Promise<number> {
  try {
    await action();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "number") return code;
    throw error;
  }
  throw new Error("expected the call to fail");
}

/** Every tool /mcp lists, sorted: the seed's four and Tessera's own. */
export const MCP_TOOL_NAMES = [
  "create-browser-context",
  "create-session",
  "delete-session",
  "list-sessions",
  "recycle-sessions",
  "renew-session",
  "session-stats",
  "validate-session",
];
