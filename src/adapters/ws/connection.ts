import type { Logger } from "pino";
import type { WebSocket } from "ws";
import type { SessionEndWatch } from "../../app/session-end-watch.ts";
import type { Validator } from "../../app/validator.ts";
import type { Clock } from "../../domain/ports.ts";
import type { ValidationEntry } from "../../projections/validation-entry.ts";
import { HttpProblem } from "../http/problem.ts";
import { reportProblem, toRpcProblem } from "../rpc/rpc-problem.ts";
import {
  type OperationName,
  operationParams,
  type RpcCaller,
  type SessionOperations,
} from "../rpc/session-operations.ts";
import {
  errorMessage,
  JsonRpcFailure,
  type JsonRpcId,
  METHOD_NOT_FOUND,
  parseRequest,
  problemMessage,
  resultMessage,
} from "./json-rpc.ts";

/** Close codes of `/v1/ws` (4000-4999 are the application's own; docs/transports.md). */
export const CLOSE = {
  /** The session that authenticated the connection ended (or its access token expired). */
  sessionEnded: 4401,
  /** No message (nor ping) within the idle timeout. */
  idle: 4408,
  /** The client kept sending over the rate limit after being told. */
  rateLimited: 4429,
  goingAway: 1001,
} as const;

export type WsLimits = {
  /** Largest message accepted; a larger one closes the connection with 1009 (enforced by ws). */
  maxMessageBytes: number;
  /** Sustained messages per second per connection, and the burst above it. */
  messagesPerSecond: number;
  burst: number;
  /** Requests of one connection being answered at once. */
  maxInFlight: number;
  /** Closes a connection that sent nothing (messages, pings) for this long. */
  idleTimeoutMs: number;
};

export const DEFAULT_WS_LIMITS: Omit<WsLimits, "maxMessageBytes"> = {
  messagesPerSecond: 20,
  burst: 40,
  maxInFlight: 16,
  idleTimeoutMs: 300_000,
};

/** Rate-limited messages in a row (each answered with a 429) after which the connection is closed. */
const REFUSALS_BEFORE_CLOSE = 100;
const MAX_TIMER_MS = 2_147_483_647;

const METHODS: Record<string, OperationName> = {
  "sessions.validate": "validate",
  "sessions.get": "get",
  "sessions.list": "list",
  "sessions.renew": "renew",
  "sessions.invalidate": "invalidate",
  "sessions.create": "create",
  "sessions.revoke_all": "revokeAll",
};

export type ConnectionDeps = {
  operations: SessionOperations;
  validator: Validator;
  endWatch: SessionEndWatch;
  clock: Clock;
  logger: Logger;
  limits: WsLimits;
};

/**
 * One authenticated WebSocket: JSON-RPC requests in, answers out, and a close with 4401 as soon as the
 * session it authenticated with ends on any instance. Every request first re-checks that session (a memory
 * lookup that also records activity, as each REST request does), so nothing is answered for a session
 * that has ended even if a notification were missed.
 */
export function serveConnection(
  socket: WebSocket,
  caller: RpcCaller,
  deps: ConnectionDeps,
  options: { accessTokenExpiresAt?: number | undefined } = {},
): { close(code: number, reason: string): void } {
  const { limits, clock } = deps;
  const principal = caller.principal;
  const sessionId = principal?.kind === "user" ? principal.sessionId : undefined;
  let closed = false;
  let inFlight = 0;
  let refusalsInARow = 0;
  let tokens = limits.burst;
  let refilledAt = performance.now();
  let deadlineTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;

  function close(code: number, reason: string) {
    if (closed) return;
    closed = true;
    cleanUp();
    socket.close(code, reason);
  }

  function cleanUp() {
    closed = true;
    clearTimeout(deadlineTimer);
    clearTimeout(idleTimer);
    clearTimeout(expiryTimer);
    unwatch?.();
  }

  function send(message: string) {
    if (!closed && socket.readyState === socket.OPEN) socket.send(message);
  }

  /** Closes with 4401 unless the session is still valid; re-arms the deadline timer when it is. */
  async function recheck(facts?: RpcCaller["facts"]): Promise<boolean> {
    if (sessionId === undefined || closed) return !closed;
    const outcome = await deps.validator.validateSession(sessionId, facts);
    if (!outcome.valid) {
      close(CLOSE.sessionEnded, `session ended: ${outcome.reason}`);
      return false;
    }
    armDeadline(outcome.entry);
    return true;
  }

  /** Expiry (absolute or idle) needs no event to end a session: look again when the next deadline passes. */
  function armDeadline(entry: ValidationEntry) {
    clearTimeout(deadlineTimer);
    let deadline = entry.expiresAt;
    if (entry.idleTimeoutSeconds > 0)
      deadline = Math.min(deadline, entry.lastActivityAt + entry.idleTimeoutSeconds * 1000);
    const delay = Math.min(Math.max(deadline - clock.now() + 1, 0), MAX_TIMER_MS);
    deadlineTimer = setTimeout(() => void recheck().catch(onRecheckError), delay);
    deadlineTimer.unref();
  }

  function onRecheckError(error: unknown) {
    // The store or the log could not answer: keep the connection; the next request checks again.
    deps.logger.warn({ err: error, sessionId }, "websocket session check failed");
  }

  function resetIdle() {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => close(CLOSE.idle, "idle timeout"), limits.idleTimeoutMs);
    idleTimer.unref();
  }

  function takeToken(): boolean {
    const now = performance.now();
    tokens = Math.min(limits.burst, tokens + ((now - refilledAt) / 1000) * limits.messagesPerSecond);
    refilledAt = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }

  async function handle(text: string) {
    let id: JsonRpcId = null;
    let notification = false;
    try {
      const request = parseRequest(text);
      id = request.id ?? null;
      notification = request.id === undefined;
      const operation = METHODS[request.method];
      if (operation === undefined) {
        throw new JsonRpcFailure(id, METHOD_NOT_FOUND, `Method not found: ${request.method}`);
      }
      const params = operationParams[operation].parse(request.params ?? {});
      if (!(await recheck(caller.facts))) return;
      // biome-ignore lint/suspicious/noExplicitAny: params were parsed by this operation's own schema
      const result = await (deps.operations[operation] as (c: RpcCaller, p: any) => Promise<unknown>)(
        caller,
        params,
      );
      if (!notification) send(resultMessage(id, result));
    } catch (error) {
      if (error instanceof JsonRpcFailure) {
        send(errorMessage(error.id, error.code, error.message));
        return;
      }
      const problem = toRpcProblem(error);
      reportProblem(deps.logger, caller, "ws", error, problem);
      if (!notification) send(problemMessage(id, problem));
    }
  }

  socket.on("message", (data, isBinary) => {
    if (closed) return;
    resetIdle();
    if (!takeToken() || inFlight >= limits.maxInFlight) {
      if (++refusalsInARow >= REFUSALS_BEFORE_CLOSE) {
        close(CLOSE.rateLimited, "rate limit exceeded");
        return;
      }
      send(
        problemMessage(
          idOf(data, isBinary),
          new HttpProblem(429, "rate_limited", "Too many messages on this connection"),
        ),
      );
      return;
    }
    refusalsInARow = 0;
    inFlight++;
    const text = Buffer.isBuffer(data)
      ? data.toString("utf8")
      : Array.isArray(data)
        ? Buffer.concat(data).toString("utf8")
        : Buffer.from(data).toString("utf8");
    void handle(text).finally(() => {
      inFlight--;
    });
  });
  socket.on("ping", resetIdle);
  socket.on("pong", resetIdle);
  socket.on("close", cleanUp);

  resetIdle();
  if (sessionId !== undefined && principal?.kind === "user") {
    unwatch = deps.endWatch.watch(sessionId, principal.userId, () => {
      void recheck().catch(onRecheckError);
    });
    // The session may have ended between the upgrade's check and the watch.
    void recheck().catch(onRecheckError);
  }
  if (options.accessTokenExpiresAt !== undefined) {
    const delay = Math.min(Math.max(options.accessTokenExpiresAt - clock.now(), 0), MAX_TIMER_MS);
    expiryTimer = setTimeout(() => close(CLOSE.sessionEnded, "access token expired"), delay);
    expiryTimer.unref();
  }
  return { close };
}

/** The id of a request refused unread (rate limit), when it can be read cheaply; null otherwise. */
function idOf(data: unknown, isBinary: boolean): JsonRpcId {
  if (isBinary) return null;
  try {
    const text = Buffer.isBuffer(data) ? data.toString("utf8") : "";
    const id = (JSON.parse(text) as { id?: unknown }).id;
    return typeof id === "string" || typeof id === "number" ? id : null;
  } catch {
    return null;
  }
}
