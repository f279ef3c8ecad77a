import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { registerBrowserTools } from "./browser-tools.ts";
import { registerSessionTools } from "./session-tools.ts";
import type { McpToolDeps, ToolCaller, ToolRegistry } from "./tool-deps.ts";

export const SERVER_INFO = { name: "tessera", title: "Tessera sessions", version: "0.1.0" } as const;

const INSTRUCTIONS =
  "Tessera manages login and MCP sessions. Use create-session to sign a user in, list-sessions / session-stats to inspect, renew-session and delete-session to extend or end one, validate-session to check a token, recycle-sessions to force re-authentication after role changes.";

// The SDK builds an Ajv instance per server unless given one (only elicitation uses it); building it is
// most of the cost of a per-request server, so all servers share one.
const jsonSchemaValidator = new AjvJsonSchemaValidator();

/**
 * An MCP server carrying every Tessera tool, bound to one caller. Over HTTP one is built per request
 * (the SDK's stateless mode), so no instance holds state another would lack; over stdio one serves the
 * whole process.
 */
export function createMcpServer(
  deps: McpToolDeps,
  caller: ToolCaller,
  options: { onlyTool?: string | undefined } = {},
): McpServer {
  const server = new McpServer(SERVER_INFO, {
    capabilities: { tools: { listChanged: false } },
    instructions: INSTRUCTIONS,
    jsonSchemaValidator,
  });
  const register = (registry: ToolRegistry) => {
    registerSessionTools(registry, deps, caller);
    registerBrowserTools(registry, deps, caller);
  };
  if (options.onlyTool === undefined) {
    register(server);
    return server;
  }
  const kept = only(server, options.onlyTool);
  register(kept.registry);
  // An unknown name: register everything, so the call fails exactly as it would otherwise.
  if (!kept.found()) register(server);
  return server;
}

/**
 * A registry that keeps one tool: a `tools/call` needs only the tool it names, and registering the other
 * seven costs more than running most tools.
 */
function only(server: McpServer, name: string) {
  let found = false;
  const registerTool: ToolRegistry["registerTool"] = (toolName, config, callback) => {
    if (toolName === name) {
      found = true;
      return server.registerTool(toolName, config, callback);
    }
    // Nobody keeps the handle registerTool returns (it is for enabling/removing tools later).
    return undefined as unknown as ReturnType<McpServer["registerTool"]>;
  };
  return { registry: { registerTool }, found: () => found };
}
