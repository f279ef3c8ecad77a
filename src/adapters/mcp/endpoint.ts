import type { FastifyInstance } from "fastify";
import { overdueCause } from "../../domain/session-state.ts";
import { createBrowserContexts } from "./browser-contexts.ts";
import { createMcpPlugin, type McpEndpointDeps } from "./plugin.ts";
import { createSessionUrls, SESSION_URL_PATH, type SessionUrlOf } from "./session-url.ts";
import type { McpToolDeps } from "./tool-deps.ts";

export type McpEndpointOptions = Omit<McpEndpointDeps, "browsers"> & {
  /** TESSERA_CHROMIUM_PATH; unset = look in the usual system locations when a context is first asked for. */
  chromiumPath: string | undefined;
  /** TESSERA_PUBLIC_URL, the base of session URLs; unset = the request's own host when /mcp accepts it. */
  publicUrl?: string | undefined;
};

export type McpEndpoint = {
  /** Registers /mcp on the HTTP app (pass it in buildHttpApp's `plugins`). */
  plugin: (app: FastifyInstance) => Promise<void>;
  /** What the tools run on, for serving them over stdio in-process (`tessera mcp --stdio`). */
  tools: McpToolDeps;
  /** The session URL of a token, for `POST /v1/sessions` (pass it in buildHttpApp's `sessionUrl`). */
  sessionUrl: SessionUrlOf;
  /** Closes browser contexts and Chromium. */
  close(): Promise<void>;
};

/** The MCP endpoint of one instance: /mcp, its tools, and the instance-local browser contexts. */
export function createMcpEndpoint(options: McpEndpointOptions): McpEndpoint {
  const { service, clock } = options;
  const browsers = createBrowserContexts({
    chromiumPath: options.chromiumPath,
    clock,
    ids: options.ids,
    logger: options.logger,
    isSessionActive: async (sessionId) => {
      const session = await service.get(sessionId);
      return session?.status === "active" && overdueCause(session, clock.now()) === undefined;
    },
  });
  const { chromiumPath: _unused, publicUrl, ...deps } = options;
  const publicSessionUrl =
    publicUrl === undefined ? undefined : (token: string) => `${publicUrl}${SESSION_URL_PATH}${token}`;
  const tools: McpToolDeps = { ...deps, browsers, sessionUrl: publicSessionUrl };
  return {
    plugin: createMcpPlugin({ ...deps, ...tools }),
    tools,
    sessionUrl: createSessionUrls({ publicUrl, hostGuard: options.hostGuard }),
    close: () => browsers.close(),
  };
}
