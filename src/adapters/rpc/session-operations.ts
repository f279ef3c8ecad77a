import { z } from "zod";
import { isAdmin, type Principal } from "../../app/access.ts";
import type { CommandContext } from "../../app/command-handler.ts";
import type { SessionReadModel } from "../../app/ports.ts";
import type { SessionService } from "../../app/session-service.ts";
import type { RequestFacts, Validator } from "../../app/validator.ts";
import type { Clock, IdGenerator } from "../../domain/ports.ts";
import { HttpProblem, unauthorized } from "../http/problem.ts";
import {
  createSessionBody,
  listQuery,
  renewBody,
  revokeAllQuery,
  sessionIdParams,
  userIdText,
  validateBody,
} from "../http/schemas.ts";
import { authorizeCreate, createInput } from "../session-ops/create.ts";
import {
  CREATE_OPERATION,
  checkedIdempotencyKey,
  idempotentCommandId,
} from "../session-ops/idempotency-key.ts";
import { createSessionOps } from "../session-ops/operations.ts";
import { answerForValid, type CheckJwtClaims } from "../session-ops/valid-answer.ts";

/**
 * The session operations of REST's `/v1/sessions` routes for the other transports (WebSocket JSON-RPC,
 * gRPC): the same request shapes (snake_case, the REST zod schemas) and, through ../session-ops, the very
 * access rules, flows and failures REST runs (HttpProblem / DomainError, which each transport maps to its
 * own status the way REST maps them to HTTP). A transport only authenticates, decodes and encodes.
 */

/** Who calls, as a transport saw it. */
export type RpcCaller = {
  /** Undefined only for `validate`, which (as on REST) needs no credential of its own. */
  principal: Principal | undefined;
  facts: RequestFacts;
  correlationId: string;
  source: "ws" | "grpc";
  traceparent?: string | undefined;
  /** The Bearer credential the caller presented: `validate` without a token checks it, as REST does. */
  bearer?: string | undefined;
};

export type SessionOperationsDeps = {
  service: SessionService;
  validator: Validator;
  readModel: SessionReadModel;
  clock: Clock;
  ids: IdGenerator;
  /** A gateway's IdP `jwt` next to the token (as REST's validate): does it still agree with the session? */
  checkJwtClaims?: CheckJwtClaims | undefined;
};

// REST's body and query schemas; path ids join them as `id`, REST's headers join them under their own
// names: the Idempotency-Key of every write is `idempotency_key` (its rule is checked once access is
// decided, as on REST). revokeAll is DELETE /v1/sessions (`except`) and, with another user's `user_id`,
// DELETE /v1/users/{id}/sessions.
const renewShape = renewBody.unwrap().unwrap().shape;
const createShape = createSessionBody.unwrap().unwrap().shape;
const idempotency_key = z.string().optional();
export const operationParams = {
  validate: validateBody,
  get: sessionIdParams,
  list: listQuery,
  renew: sessionIdParams.extend({ ...renewShape, idempotency_key }),
  invalidate: sessionIdParams.extend({ idempotency_key }),
  create: z.strictObject({ ...createShape, idempotency_key }).nullish(),
  revokeAll: revokeAllQuery.extend({ user_id: userIdText.optional(), idempotency_key }).nullish(),
} as const;

export type OperationName = keyof typeof operationParams;
export type OperationParams<N extends OperationName> = z.output<(typeof operationParams)[N]>;

export function createSessionOperations(deps: SessionOperationsDeps) {
  const { service, ids } = deps;
  const ops = createSessionOps(deps);
  const view = ops.view;

  function requirePrincipal(caller: RpcCaller): Principal {
    if (!caller.principal) throw unauthorized();
    return caller.principal;
  }

  /**
   * The command context of a write whose access is decided: a key, checked now (a malformed key never
   * outranks a 403, as on REST), derives the command id REST derives for the same caller, operation and key.
   */
  function keyedContext(caller: RpcCaller, principal: Principal, rawKey: string | undefined) {
    return (operation: string) =>
      context(caller, principal, { operation, key: checkedIdempotencyKey(rawKey, keyName(caller)) });
  }

  /** A fresh command id, or with a key the one REST derives for the same caller, operation and key. */
  function context(
    caller: RpcCaller,
    principal: Principal,
    keyed?: { operation: string; key: string | undefined },
  ): CommandContext {
    const key = keyed?.key;
    return {
      commandId:
        keyed === undefined || key === undefined
          ? ids.uuidv7()
          : idempotentCommandId(principal, keyed.operation, key),
      correlationId: caller.correlationId,
      actor: principal.actor,
      source: caller.source,
      ip: caller.facts.ip,
      userAgent: caller.facts.userAgent,
      traceparent: caller.traceparent,
    };
  }

  return {
    /** POST /v1/sessions/validate: an answer either way ({valid:false, reason} is not a failure). */
    async validate(caller: RpcCaller, params: OperationParams<"validate">) {
      const body = params ?? {};
      const token = body.token ?? caller.bearer;
      const facts = {
        ip: body.client_ip ?? caller.facts.ip,
        userAgent: body.user_agent ?? caller.facts.userAgent,
      };
      if (token === undefined) return { valid: false as const, reason: "malformed" };
      const outcome = await deps.validator.validate(token, facts);
      if (!outcome.valid) return { valid: false as const, reason: outcome.reason as string };
      const answer = await answerForValid(deps, outcome.entry, body.jwt, facts);
      if (!answer.valid) return answer;
      // REST's Tessera-Session-View: partial header is `partial_view` here.
      const { partial, ...valid } = answer;
      return partial ? { ...valid, partial_view: true } : valid;
    },

    /** GET /v1/sessions/{id}. */
    async get(caller: RpcCaller, params: OperationParams<"get">) {
      return view(await ops.readable(requirePrincipal(caller), params.id));
    },

    /** GET /v1/sessions; the freshness REST sends as headers is part of the answer. */
    async list(caller: RpcCaller, params: OperationParams<"list">) {
      let read_model = { position: 0, behind: 0 };
      const page = await ops.list(requirePrincipal(caller), params, (freshness) => {
        read_model = { position: freshness.position, behind: freshness.behind };
      });
      return { sessions: page.sessions, total: page.total, next_cursor: page.next_cursor, read_model };
    },

    /** POST /v1/sessions/{id}/renew. */
    async renew(caller: RpcCaller, params: OperationParams<"renew">) {
      const principal = requirePrincipal(caller);
      const contextFor = keyedContext(caller, principal, params.idempotency_key);
      return ops.renew(principal, params.id, params.ttl_seconds, contextFor);
    },

    /** DELETE /v1/sessions/{id}: idempotent, an ended session answers with its end reason. */
    async invalidate(caller: RpcCaller, params: OperationParams<"invalidate">) {
      const principal = requirePrincipal(caller);
      return ops.invalidate(principal, params.id, keyedContext(caller, principal, params.idempotency_key));
    },

    /**
     * POST /v1/sessions, with `idempotency_key` as its Idempotency-Key: scoped as REST scopes it (the
     * caller's user or the admin key, and the operation), so a retry over any transport finds the
     * original; `idempotent_replayed` is REST's Idempotent-Replayed header.
     */
    async create(caller: RpcCaller, params: OperationParams<"create">) {
      const principal = requirePrincipal(caller);
      const { idempotency_key: rawKey, ...body } = params ?? {};
      // Sealing needs REST's credential vault; taking them here and dropping them would let a client
      // believe its upstream secrets were stored.
      if (body.credentials !== undefined) {
        throw new HttpProblem(
          400,
          "invalid_request",
          "credentials can only be given over REST (POST /v1/sessions)",
        );
      }
      const self = authorizeCreate(principal, body);
      // After the access decision, as on REST: a malformed key never outranks a 403.
      const key = checkedIdempotencyKey(rawKey, keyName(caller));
      const created = await service.create(
        createInput(principal, self, body, caller.facts.ip, caller.facts.userAgent, key, undefined),
        context(caller, principal, { operation: CREATE_OPERATION, key }),
      );
      return { session: view(created.session), token: created.token, idempotent_replayed: created.replayed };
    },

    /**
     * Ends all of a user's sessions: the caller's own (DELETE /v1/sessions, `except: "current"` keeps the
     * calling one), or with another user's `user_id` that user's, for admins only (DELETE
     * /v1/users/{id}/sessions). Naming oneself is the former, so a user token never needs admin rights.
     */
    async revokeAll(caller: RpcCaller, params: OperationParams<"revokeAll">) {
      const principal = requirePrincipal(caller);
      const { user_id: userId, except, idempotency_key: rawKey } = params ?? {};
      const contextFor = keyedContext(caller, principal, rawKey);
      if (principal.kind === "user" && (userId === undefined || userId === principal.userId)) {
        return ops.revokeAll(principal, except === "current", contextFor);
      }
      if (userId === undefined) {
        throw new HttpProblem(400, "invalid_request", "user_id is required with x-admin-key");
      }
      // Only a caller that may act on another user gets to hear that `except` does not apply there.
      if (except !== undefined && isAdmin(principal)) {
        throw new HttpProblem(400, "invalid_request", "except applies to the caller's own sessions only");
      }
      return ops.revokeUser(principal, userId, contextFor);
    },
  };
}

export type SessionOperations = ReturnType<typeof createSessionOperations>;

/** Where a caller put its key, for the 400 that refuses a malformed one. */
function keyName(caller: RpcCaller): string {
  return caller.source === "grpc" ? "The idempotency-key metadata" : "idempotency_key";
}
