import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Logger } from "pino";
import type { Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import type { LoginService } from "../../app/login-service.ts";
import type { SessionReadModel } from "../../app/ports.ts";
import type { SessionService } from "../../app/session-service.ts";
import type { RequestFacts, Validator } from "../../app/validator.ts";
import type { Clock, IdGenerator } from "../../domain/ports.ts";
import type { BrowserContexts } from "./browser-contexts.ts";

/** The password login of the token endpoint (src/app/login-service.ts); create-session uses it. */
export type PasswordLogin = LoginService["passwordLogin"];

/**
 * Everything the tools call: the same services, read model and validator the REST routes use. The optional
 * parts are wired by the composition root when the corresponding feature exists; a tool whose part is
 * missing answers NOT_AVAILABLE.
 */
export type McpToolDeps = {
  service: SessionService;
  validator: Validator;
  readModel: SessionReadModel;
  clock: Clock;
  ids: IdGenerator;
  logger: Logger;
  passwordLogin?: PasswordLogin | undefined;
  /** Recycles every live session of a user; resolves to how many it ended. */
  recycleUser?: ((userId: string, context: CommandContext) => Promise<number>) | undefined;
  /** Recycles one session (an MCP session whose caller's claims changed). */
  recycleSession?: ((sessionId: string, context: CommandContext) => Promise<unknown>) | undefined;
  browsers?: BrowserContexts | undefined;
  /** A token's session URL under TESSERA_PUBLIC_URL (create-session returns it); unset without one. */
  sessionUrl?: ((token: string) => string) | undefined;
};

/** Who is calling a tool, from where, as part of which request. */
export type ToolCaller = {
  principal: Principal;
  facts: RequestFacts;
  correlationId: string;
  traceparent?: string | undefined;
};

export function mcpCommandContext(caller: ToolCaller, ids: IdGenerator): CommandContext {
  return {
    commandId: ids.uuidv7(),
    correlationId: caller.correlationId,
    actor: caller.principal.actor,
    source: "mcp",
    ip: caller.facts.ip,
    userAgent: caller.facts.userAgent,
    traceparent: caller.traceparent,
  };
}

/** Where tools are registered: an McpServer, or a view of one that keeps only the tools a request needs. */
export type ToolRegistry = Pick<McpServer, "registerTool">;
