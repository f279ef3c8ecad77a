import { constants } from "node:fs";
import { access } from "node:fs/promises";
import type { Logger } from "pino";
import type { Browser, BrowserContext } from "puppeteer-core";
import type { Clock, IdGenerator } from "../../domain/ports.ts";
import { ToolFailure } from "./tool-results.ts";

/**
 * Puppeteer browser contexts for create-browser-context (seed 001), on the system Chromium through
 * puppeteer-core. A browser is a local process, so contexts — unlike sessions — belong to the instance
 * that created them; each is tied to a Tessera session and closed once that session is no longer active.
 */
export type BrowserContextInfo = {
  contextId: string;
  sessionId: string;
  name: string;
  type: "puppeteer";
  status: "active";
  createdAt: string;
};

export type BrowserContextRequest = {
  sessionId: string;
  name?: string | undefined;
  headless?: boolean | undefined;
  viewport?: { width?: number | undefined; height?: number | undefined } | undefined;
};

export type BrowserContexts = {
  create(request: BrowserContextRequest): Promise<BrowserContextInfo>;
  /** Contexts open on this instance. */
  readonly size: number;
  /** Closes contexts whose session is no longer active; returns how many. */
  sweep(): Promise<number>;
  close(): Promise<void>;
};

const KNOWN_PATHS = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
  "/usr/bin/google-chrome-stable",
];

/** The configured Chromium if it is executable, else the first known system path that is; undefined if none. */
export async function findChromium(configured: string | undefined): Promise<string | undefined> {
  for (const path of configured === undefined ? KNOWN_PATHS : [configured]) {
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not there: try the next
    }
  }
  return undefined;
}

export function createBrowserContexts(deps: {
  chromiumPath: string | undefined;
  clock: Clock;
  ids: IdGenerator;
  isSessionActive: (sessionId: string) => Promise<boolean>;
  logger: Logger;
  maxContexts?: number;
  sweepIntervalMs?: number;
}): BrowserContexts {
  const maxContexts = deps.maxContexts ?? 16;
  const browsers = new Map<"headless" | "headful", Promise<Browser>>();
  const contexts = new Map<string, { context: BrowserContext; sessionId: string }>();
  let closed = false;
  const timer = setInterval(() => {
    sweep().catch((error) => deps.logger.warn({ err: error }, "browser context sweep failed"));
  }, deps.sweepIntervalMs ?? 30_000);
  timer.unref();

  async function launch(headless: boolean): Promise<Browser> {
    const executablePath = await findChromium(deps.chromiumPath);
    if (!executablePath) {
      throw new ToolFailure(
        "BROWSER_UNAVAILABLE",
        "No Chromium found on this server: install chromium or set TESSERA_CHROMIUM_PATH",
      );
    }
    const { default: puppeteer } = await import("puppeteer-core");
    try {
      return await puppeteer.launch({
        executablePath,
        headless,
        // Chromium refuses to sandbox as root (containers); the sandbox stays on otherwise.
        args: [
          ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
          "--disable-dev-shm-usage",
          "--disable-gpu",
        ],
      });
    } catch (error) {
      deps.logger.warn({ err: error, executablePath }, "chromium failed to start");
      throw new ToolFailure("BROWSER_UNAVAILABLE", "Chromium could not be started on this server");
    }
  }

  function browserFor(headless: boolean): Promise<Browser> {
    const key = headless ? "headless" : "headful";
    let browser = browsers.get(key);
    if (!browser) {
      browser = launch(headless);
      browsers.set(key, browser);
      // A failed launch is not cached: the next call tries again (Chromium may have been installed since).
      browser.catch(() => browsers.delete(key));
    }
    return browser;
  }

  async function closeContext(contextId: string) {
    const entry = contexts.get(contextId);
    contexts.delete(contextId);
    await entry?.context.close().catch(() => undefined);
  }

  async function sweep(): Promise<number> {
    let swept = 0;
    for (const [contextId, entry] of [...contexts]) {
      if (!(await deps.isSessionActive(entry.sessionId))) {
        await closeContext(contextId);
        swept++;
      }
    }
    return swept;
  }

  return {
    get size() {
      return contexts.size;
    },
    sweep,
    async create(request) {
      if (closed) throw new ToolFailure("BROWSER_UNAVAILABLE", "This instance is shutting down");
      if (contexts.size >= maxContexts) await sweep();
      if (contexts.size >= maxContexts) {
        throw new ToolFailure(
          "BROWSER_CONTEXT_FAILED",
          "Too many browser contexts are open on this instance",
        );
      }
      const browser = await browserFor(request.headless ?? true);
      const context = await browser.createBrowserContext();
      const contextId = deps.ids.uuidv7();
      contexts.set(contextId, { context, sessionId: request.sessionId });
      try {
        const page = await context.newPage();
        await page.setViewport({
          width: request.viewport?.width ?? 1280,
          height: request.viewport?.height ?? 720,
        });
      } catch (error) {
        await closeContext(contextId);
        throw error;
      }
      return {
        contextId,
        sessionId: request.sessionId,
        name: request.name ?? `context-${contextId.slice(-8)}`,
        type: "puppeteer",
        status: "active",
        createdAt: new Date(deps.clock.now()).toISOString(),
      };
    },
    async close() {
      closed = true;
      clearInterval(timer);
      for (const contextId of [...contexts.keys()]) await closeContext(contextId);
      for (const browser of browsers.values()) {
        await browser.then((b) => b.close()).catch(() => undefined);
      }
      browsers.clear();
    },
  };
}
