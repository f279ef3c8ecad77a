import { z } from "zod";
import { overdueCause } from "../../domain/session-state.ts";
import type { McpToolDeps, ToolCaller, ToolRegistry } from "./tool-deps.ts";
import { createToolHelpers, sessionIdInput } from "./tool-helpers.ts";
import { ToolFailure } from "./tool-results.ts";

const createBrowserContextTool = {
  title: "Create browser context",
  description:
    "Create an isolated Puppeteer browser context (own cookies and storage) on this server's Chromium, tied to an active session you own; it is closed when that session ends. Errors: INVALID_SESSION_ID, SESSION_NOT_FOUND, ACCESS_DENIED, SESSION_ENDED, BROWSER_UNAVAILABLE (no Chromium on the server), BROWSER_CONTEXT_FAILED.",
  inputSchema: {
    sessionId: sessionIdInput,
    name: z.string().min(1).max(128).optional().describe("A label for the context"),
    options: z
      .object({
        headless: z.boolean().optional().describe("Run without a window (default true)"),
        viewport: z
          .object({
            width: z.number().int().min(100).max(7680).optional(),
            height: z.number().int().min(100).max(4320).optional(),
          })
          .optional()
          .describe("Viewport of the context's first page (default 1280x720)"),
      })
      .optional(),
  },
  outputSchema: {
    contextId: z.string(),
    sessionId: z.string(),
    name: z.string(),
    type: z.literal("puppeteer"),
    status: z.literal("active"),
    createdAt: z.string(),
  },
  annotations: { destructiveHint: false, openWorldHint: true },
};

/** create-browser-context (seed 001): a Puppeteer context on the system Chromium, tied to a live session. */
export function registerBrowserTools(server: ToolRegistry, deps: McpToolDeps, caller: ToolCaller) {
  const { guarded, loadOwned } = createToolHelpers(deps, caller);

  server.registerTool("create-browser-context", createBrowserContextTool, ({ sessionId, name, options }) =>
    guarded(
      "create-browser-context",
      "BROWSER_CONTEXT_FAILED",
      "Could not create a browser context",
      async () => {
        const session = await loadOwned(sessionId, "sessions:write");
        if (session.status !== "active" || overdueCause(session, deps.clock.now()) !== undefined) {
          throw new ToolFailure("SESSION_ENDED", "Session has ended");
        }
        if (!deps.browsers) throw new ToolFailure("BROWSER_UNAVAILABLE", "Browser contexts are not enabled");
        return deps.browsers.create({
          sessionId,
          name,
          headless: options?.headless,
          viewport: options?.viewport,
        });
      },
    ),
  );
}
