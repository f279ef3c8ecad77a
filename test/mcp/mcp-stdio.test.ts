import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  NATS_URL,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { adminHeaders, eventually, startDistributed, TEST_JWT_PRIVATE_KEY } from "../support/tessera.ts";
import { listen, structured, toolError, userSession } from "./support.ts";

/**
 * `tessera mcp --stdio` as a local MCP client starts it: a child process spoken to over stdin/stdout by the
 * SDK's stdio client — once proxying a running instance over HTTP, once running Tessera in-process against
 * the same NATS and Postgres.
 */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let a: Tessera;
let urlA: string;
const clients: Client[] = [];

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("mcpio");
  database = await createTestDatabase();
  a = await startDistributed({ prefix, databaseUrl: database.url });
  urlA = await listen(a);
});

afterAll(async () => {
  for (const client of clients) await client.close().catch(() => undefined);
  await a?.close();
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
});

async function spawnStdio(env: Record<string, string>) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ["bin/tessera.mjs", "mcp", "--stdio"],
    cwd: process.cwd(),
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "warn", ...env },
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const client = new Client({ name: "stdio-test", version: "1.0.0" });
  clients.push(client);
  try {
    await client.connect(transport);
  } catch (error) {
    throw new Error(`stdio server failed to start: ${String(error)}\n${stderr}`);
  }
  return client;
}

const call = async (client: Client, name: string, args: Record<string, unknown> = {}) =>
  (await client.callTool({ name, arguments: args })) as CallToolResult;

describe("tessera mcp --stdio", () => {
  it("proxies a running Tessera: same tools, the caller's own permissions, re-initializes after a 404", async () => {
    const alice = await userSession(a, "stdio-alice");
    const client = await spawnStdio({ TESSERA_URL: urlA, TESSERA_TOKEN: alice.token });
    const tools = await client.listTools();
    expect(tools.tools.map((tool) => tool.name)).toContain("create-session");
    expect(tools.tools).toHaveLength(8);
    const stats = structured<{ scope: string }>(await call(client, "session-stats"));
    expect(stats.scope).toBe("user");
    expect(toolError(await call(client, "list-sessions", { userId: "someone-else" })).code).toBe(
      "ACCESS_DENIED",
    );

    // End the proxy's MCP session behind its back: its next call re-initializes and succeeds.
    await a.service.readYourWrites();
    const listed = await a.app.inject({
      method: "GET",
      url: "/v1/sessions?user_id=stdio-alice",
      headers: adminHeaders,
    });
    const mcpSessions = (listed.json() as { sessions: Array<{ id: string; kind: string }> }).sessions.filter(
      (s) => s.kind === "mcp",
    );
    expect(mcpSessions).toHaveLength(1);
    const ended = await a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${mcpSessions[0]?.id}`,
      headers: adminHeaders,
    });
    expect(ended.statusCode).toBe(200);
    structured(await call(client, "session-stats"));
    await eventually(async () => {
      await a.service.readYourWrites();
      const again = await a.app.inject({
        method: "GET",
        url: "/v1/sessions?user_id=stdio-alice",
        headers: adminHeaders,
      });
      return (
        (again.json() as { sessions: Array<{ kind: string }> }).sessions.filter((s) => s.kind === "mcp")
          .length === 1
      );
    });
  });

  it("runs Tessera in-process against the same NATS and Postgres, as the local operator", async () => {
    const bob = await userSession(a, "stdio-bob");
    const client = await spawnStdio({
      NATS_URL,
      DATABASE_URL: database.url,
      TESSERA_PREFIX: prefix,
      TESSERA_JWT_PRIVATE_KEY: TEST_JWT_PRIVATE_KEY,
      TESSERA_IDEMPOTENCY_SECRET: "test-idempotency-secret",
    });
    const stats = structured<{ scope: string }>(await call(client, "session-stats"));
    expect(stats.scope).toBe("global");
    const validated = structured<{ valid: boolean; user?: { id: string } }>(
      await call(client, "validate-session", { token: bob.token }),
    );
    expect(validated).toMatchObject({ valid: true, user: { id: "stdio-bob" } });
    const deleted = structured<{ success: boolean }>(
      await call(client, "delete-session", { sessionId: bob.sessionId }),
    );
    expect(deleted.success).toBe(true);
    // The instance serving HTTP sees the ending the stdio process wrote.
    await eventually(() => a.validator.validateFromMemory(bob.token)?.valid === false, 2_000);
  });

  it("refuses to start without --stdio, and without credentials for a remote Tessera", async () => {
    const { runMcpCli } = await import("../../src/cli-mcp.ts");
    const usage = vi.spyOn(console, "error").mockImplementation(() => undefined);
    expect(await runMcpCli([], {})).toBe(2);
    expect(usage.mock.calls[0]?.[0]).toContain("--stdio");
    usage.mockRestore();
    await expect(runMcpCli(["--stdio"], { TESSERA_URL: urlA })).rejects.toThrow(/TESSERA_TOKEN/);
  });
});
