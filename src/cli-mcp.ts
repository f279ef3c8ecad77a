import { parseArgs } from "node:util";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import pino from "pino";
import {
  createHttpProxyServer,
  passwordCredentials,
  type RemoteCredentials,
  staticCredentials,
} from "./adapters/mcp/http-proxy.ts";
import { createMcpServer } from "./adapters/mcp/mcp-server.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { createTessera } from "./main.ts";

export const MCP_USAGE = `Usage: tessera mcp --stdio [--url <tessera base url>]

Serves Tessera's MCP tools to a local client over stdin/stdout.

  With --url (or TESSERA_URL): talks to a running Tessera over HTTP (its /mcp endpoint), authenticated by
    TESSERA_TOKEN (a tss_ session token or JWT), or TESSERA_USERNAME + TESSERA_PASSWORD (password grant),
    or TESSERA_ADMIN_KEY.
  Without: runs Tessera in this process (embedded, or against NATS_URL + DATABASE_URL) and acts as the
    local operator (admin).

Logs go to stderr; stdout carries only MCP messages.`;

type Env = Record<string, string | undefined>;

/** `tessera mcp …`; resolves with the exit code once stdin closes or a signal arrives. */
export async function runMcpCli(argv: string[], env: Env = process.env): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { stdio: { type: "boolean" }, url: { type: "string" }, help: { type: "boolean", short: "h" } },
    strict: true,
  });
  if (values.help) {
    console.error(MCP_USAGE);
    return 0;
  }
  if (!values.stdio) {
    console.error(
      `tessera mcp: only --stdio is served here (HTTP clients use /mcp of \`tessera serve\`)\n\n${MCP_USAGE}`,
    );
    return 2;
  }
  const url = values.url ?? env.TESSERA_URL;
  return url === undefined ? serveInProcess(env) : serveRemote(new URL(url), env);
}

function credentialsFrom(baseUrl: URL, env: Env): RemoteCredentials {
  if (env.TESSERA_TOKEN) return staticCredentials({ authorization: `Bearer ${env.TESSERA_TOKEN}` });
  if (env.TESSERA_USERNAME && env.TESSERA_PASSWORD) {
    return passwordCredentials(baseUrl, env.TESSERA_USERNAME, env.TESSERA_PASSWORD);
  }
  if (env.TESSERA_ADMIN_KEY) return staticCredentials({ "x-admin-key": env.TESSERA_ADMIN_KEY });
  throw new ConfigError([
    "TESSERA_TOKEN, TESSERA_USERNAME + TESSERA_PASSWORD, or TESSERA_ADMIN_KEY: one is needed to reach TESSERA_URL",
  ]);
}

async function serveRemote(baseUrl: URL, env: Env): Promise<number> {
  const server = createHttpProxyServer({ baseUrl, credentials: credentialsFrom(baseUrl, env) });
  return serveUntilClosed(server, async () => undefined);
}

async function serveInProcess(env: Env): Promise<number> {
  const config = loadConfig(env);
  // stdout is the MCP channel: every log line goes to stderr.
  const logger = pino({ level: config.logLevel, name: "tessera-mcp" }, pino.destination(2));
  const tessera = await createTessera(config, { logger });
  const server = createMcpServer(tessera.mcp.tools, {
    principal: { kind: "admin", actor: { kind: "admin", id: "stdio" }, via: "admin_key" },
    facts: { ip: "127.0.0.1", userAgent: "tessera-mcp-stdio" },
    correlationId: `stdio-${tessera.instanceId}`,
  }).server;
  return serveUntilClosed(server, () => tessera.close());
}

async function serveUntilClosed(server: Server, cleanup: () => Promise<void>): Promise<number> {
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.once("end", () => resolve());
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close().catch(() => undefined);
  await cleanup();
  return 0;
}
