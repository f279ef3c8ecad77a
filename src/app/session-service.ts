import { createHmac } from "node:crypto";
import { DomainError, sessionNotFound } from "../domain/errors.ts";
import type {
  InvalidationReason,
  RecordedEvent,
  SealedCredentials,
  SessionBinding,
  SessionEvent,
  SessionKind,
  UserEvent,
} from "../domain/events.ts";
import { sessionStream, userStream } from "../domain/events.ts";
import type { Clock, EventLog, IdGenerator, SecretGenerator } from "../domain/ports.ts";
import type { CreateSession, SessionCommand } from "../domain/session-commands.ts";
import { decide, invalidationOn } from "../domain/session-decider.ts";
import {
  type ExistingSession,
  evolve,
  initialSessionState,
  isEnded,
  type SessionState,
} from "../domain/session-state.ts";
import { formatToken, hashSecret } from "../domain/tokens.ts";
import {
  decideUser,
  evolveUser,
  initialUserState,
  type UserCommand,
  type UserState,
} from "../domain/user-decider.ts";
import {
  evolveValidationEntry,
  type ValidationEntry,
  validationEntryFromState,
} from "../projections/validation-entry.ts";
import {
  type CommandContext,
  type CommandObserver,
  createCommandHandler,
  type Presumed,
} from "./command-handler.ts";
import { idempotencyKeyReused, originalCreation, sameCreateRequest } from "./idempotent-create.ts";
import type { SessionPolicy } from "./policy.ts";
import type { ReadModelFreshness, SessionReadModel, ValidationReplica, ValidationStore } from "./ports.ts";
import { createWithinLimit, type SessionLimiter } from "./session-limit.ts";
import { fanOutCommandId } from "./user-service.ts";

export type CreateSessionInput = {
  userId: string;
  username: string;
  kind: SessionKind;
  roles: string[];
  groups: string[];
  scope: string[];
  ttlSeconds?: number | undefined;
  idleTimeoutSeconds?: number | undefined;
  client?: string | undefined;
  ipAddress?: string | undefined;
  userAgent?: string | undefined;
  metadata: Record<string, unknown>;
  idpSessionId?: string | undefined;
  withRefreshToken?: boolean | undefined;
  /** Client-chosen idempotency key, scoped to `principal`. */
  idempotencyKey?: string | undefined;
  principal: string;
  /**
   * Encrypts upstream credentials for the new session once its id exists, storing the session's data key
   * before the event is appended (credential-vault.ts); the ciphertext goes into SessionCreated.
   */
  sealCredentials?: ((sessionId: string) => Promise<SealedCredentials>) | undefined;
};

export type CreatedSession = {
  session: ExistingSession;
  token: string;
  refreshToken: string | undefined;
  /** True when this was a retry of an earlier create with the same idempotency key. */
  replayed: boolean;
};

export type SessionServiceDeps = {
  log: EventLog;
  clock: Clock;
  ids: IdGenerator;
  secrets: SecretGenerator;
  policy: SessionPolicy;
  replica: ValidationReplica;
  /**
   * The shared validation view. An ending is written through to it as soon as it is appended, so other
   * instances refuse the session one KV watch hop later instead of waiting for the projection.
   */
  store?: ValidationStore | undefined;
  readModel: SessionReadModel;
  /** Keys idempotent token derivation; never leaves the process. */
  idempotencySecret: string;
  observer?: CommandObserver | undefined;
  /** The concurrent-session limit; absent when unlimited. */
  limiter?: SessionLimiter | undefined;
};

type RunOptions = {
  /** The stream is new (HandleOptions.newStream). */
  newStream?: boolean | undefined;
  /**
   * The command decided on this instance's validation entry for the session (the stream as of the
   * entry's position), used when no state is cached: the event it causes, or undefined when only the
   * whole state can decide.
   */
  onEntry?: ((entry: ValidationEntry, now: number) => SessionEvent | undefined) | undefined;
};

/** A create's session id was generated for it: no stream to read first (HandleOptions.newStream). */
const NEW_STREAM = { newStream: true } as const;

/**
 * The write side: every change to a session or user goes through here, as a command decided on the
 * stream's current state and appended with optimistic concurrency.
 */
export function createSessionService(deps: SessionServiceDeps) {
  const { log, clock, ids, secrets, policy, replica } = deps;
  const sessions = createCommandHandler<SessionState, SessionCommand, SessionEvent>({
    log,
    clock,
    ids,
    decider: { decide, evolve, initialState: initialSessionState },
    observer: deps.observer,
  });
  const users = createCommandHandler<UserState, UserCommand, UserEvent>({
    log,
    clock,
    ids,
    decider: { decide: decideUser, evolve: evolveUser, initialState: initialUserState },
    observer: deps.observer,
  });
  let lastPosition = 0;

  /** Makes this instance see its own writes at once, before the KV projection echoes them back. */
  function publishLocally(state: SessionState, version: number) {
    if (version > lastPosition) lastPosition = version;
    if (state.status !== "none") replica.offerSession(validationEntryFromState(state, version));
  }

  /** A session's validation entry: this instance's replica, else its own stream (fresh). */
  async function entryOf(sessionId: string) {
    const cached = replica.getSession(sessionId);
    if (cached) return cached;
    const { state, version } = await sessions.read(sessionStream(sessionId));
    return state.status === "none" ? undefined : validationEntryFromState(state, version);
  }

  async function runSession(
    sessionId: string,
    build: (now: number, state: SessionState) => SessionCommand,
    context: CommandContext,
    options: RunOptions = {},
  ) {
    let writtenThrough = false;
    const { onEntry } = options;
    // With nothing cached, a command that can be decided on this instance's validation entry is appended
    // at the entry's position without reading the stream first (HandleOptions.presumed); an ending is
    // written through the moment the log has it, while the stream is read for the answer.
    const presumed =
      onEntry === undefined
        ? undefined
        : (now: number): Presumed<SessionEvent> | undefined => {
            const entry = replica.getSession(sessionId);
            const event = entry === undefined ? undefined : onEntry(entry, now);
            if (entry === undefined || event === undefined) return undefined;
            return {
              version: entry.position,
              event,
              onAppended: (recorded) => {
                const next = evolveValidationEntry(entry, recorded as RecordedEvent<SessionEvent>);
                if (next === undefined) return undefined;
                if (next.position > lastPosition) lastPosition = next.position;
                replica.offerSession(next);
                if (next.status === "active") return undefined;
                writtenThrough = true;
                return writeEntryThrough(next);
              },
            };
          };
    const result = await sessions.handle(sessionStream(sessionId), build, context, {
      newStream: options.newStream,
      presumed,
    });
    publishLocally(result.state, result.version);
    if (!writtenThrough && result.appended.length > 0 && isEnded(result.state))
      await writeEntryThrough(validationEntryFromState(result.state, result.version));
    return result;
  }

  async function writeEntryThrough(entry: ValidationEntry) {
    // Best effort: the validation projection writes the same entry (position-guarded) moments later anyway.
    await deps.store?.putSession(entry).catch(() => {});
  }

  function derivedSecret(principal: string, key: string) {
    return createHmac("sha256", deps.idempotencySecret)
      .update(`${principal}\u0000${key}`)
      .digest("base64url");
  }

  function bindingFor(input: CreateSessionInput): SessionBinding {
    switch (policy.binding) {
      case "off":
        return { mode: "off" };
      case "ip":
        return { mode: "ip", ip: input.ipAddress };
      case "ua":
        return { mode: "ua", userAgent: input.userAgent };
      case "ip+ua":
        return { mode: "ip+ua", ip: input.ipAddress, userAgent: input.userAgent };
      default: {
        const unreachable: never = policy.binding;
        return unreachable;
      }
    }
  }

  /** Creates a session under the concurrent-session limit (session-limit.ts). */
  function createLimited(limiter: SessionLimiter, data: CreateSession["data"], context: CommandContext) {
    const { sessionId, userId } = data;
    const endAs = (id: string, suffix: string) => {
      // Decided on the log: a cached "does not exist yet" for a session another instance has created
      // since would skip the eviction (see docs/policies.md).
      sessions.forget(sessionStream(id));
      return runSession(id, (now) => ({ type: "InvalidateSession", now, data: { reason: "evicted" } }), {
        ...context,
        commandId: `${context.commandId}:${suffix}:${id}`,
        causationId: context.commandId,
      });
    };
    return createWithinLimit(limiter, {
      userId,
      sessionId,
      lookup: entryOf,
      evict: (id) => endAs(id, "evict").then(() => undefined, ignoreUnknownSession),
      // The id was generated for this create: no stream to read (a conflict would re-read anyway).
      create: () =>
        runSession(sessionId, (now) => ({ type: "CreateSession", now, data }), context, NEW_STREAM),
      isDuplicate: (created) => created.duplicate,
      endOwn: () => endAs(sessionId, "evicted").then(() => undefined),
    });
  }

  return {
    policy,
    get lastPosition() {
      return lastPosition;
    },

    /** Records a log position this instance's reads should reflect (e.g. the log's end at start-up). */
    observe(position: number) {
      if (position > lastPosition) lastPosition = position;
    },

    async create(input: CreateSessionInput, context: CommandContext): Promise<CreatedSession> {
      const idempotent = input.idempotencyKey !== undefined;
      const secret = idempotent
        ? derivedSecret(input.principal, `token:${input.idempotencyKey}`)
        : secrets.newSecret();
      const refreshSecret =
        input.withRefreshToken === true
          ? idempotent
            ? derivedSecret(input.principal, `refresh:${input.idempotencyKey}`)
            : secrets.newSecret()
          : undefined;
      const sessionId = ids.uuidv7();
      const defaultIdle = input.kind === "mcp" ? policy.mcpIdleTimeoutSeconds : policy.idleTimeoutSeconds;
      const credentials =
        input.sealCredentials === undefined ? undefined : await input.sealCredentials(sessionId);
      const data: CreateSession["data"] = {
        sessionId,
        userId: input.userId,
        username: input.username,
        kind: input.kind,
        roles: input.roles,
        groups: input.groups,
        scope: input.scope,
        tokenHash: hashSecret(secret),
        refreshTokenHash: refreshSecret === undefined ? undefined : hashSecret(refreshSecret),
        ttlSeconds: input.ttlSeconds ?? policy.defaultTtlSeconds,
        maxLifetimeSeconds: policy.maxLifetimeSeconds,
        idleTimeoutSeconds: input.idleTimeoutSeconds ?? defaultIdle,
        client: input.client,
        ipAddress: input.ipAddress,
        userAgent: input.userAgent,
        binding: bindingFor(input),
        metadata: input.metadata,
        idpSessionId: input.idpSessionId,
        credentials,
      };
      // No named closures on this path: `npm start` runs through tsx, whose keepNames gives every named
      // function expression an Object.defineProperty per evaluation (~0.35 µs each, five per create).
      const result =
        deps.limiter === undefined
          ? await runSession(sessionId, (now) => ({ type: "CreateSession", now, data }), context, NEW_STREAM)
          : await createLimited(deps.limiter, data, context);
      const session = result.state;
      if (session.status === "none") throw new Error("create appended nothing");
      if (result.duplicate) {
        // Same command id: the same caller and key. Hand the original back only to the same request
        // (idempotent-create.ts), and never a session whose token this request cannot have derived.
        const original = originalCreation(result.original);
        if (session.tokenHash !== hashSecret(secret) || (original && !sameCreateRequest(original, data)))
          throw idempotencyKeyReused();
        // Credentials are compared by presence only: the original's are sealed (docs/credentials.md).
        if (original && (original.credentials === undefined) !== (credentials === undefined))
          throw idempotencyKeyReused();
      }
      return {
        session,
        token: formatToken("session", session.sessionId, secret),
        refreshToken:
          refreshSecret === undefined ? undefined : formatToken("refresh", session.sessionId, refreshSecret),
        replayed: result.duplicate,
      };
    },

    async renew(sessionId: string, ttlSeconds: number | undefined, context: CommandContext) {
      const result = await runSession(
        sessionId,
        (now) => ({
          type: "RenewSession",
          now,
          data: { ttlSeconds: ttlSeconds ?? policy.defaultTtlSeconds },
        }),
        context,
      );
      return requireExisting(sessionId, result.state);
    },

    /**
     * RotateRefreshToken (RFC 9700): the presented hash must be the current one. A superseded one ends the
     * session (`refresh_token_reuse`, an appended SessionInvalidated); the caller answers invalid_grant for
     * that, for an unknown token (the decider throws) and for an ended session.
     */
    async rotateRefreshToken(
      sessionId: string,
      hashes: { presented: string; next: string },
      context: CommandContext,
    ) {
      // Decided on the log, not the cache: a rotation on another instance leaves the cached hash behind,
      // and the decider would refuse the (current) token as unknown instead of meeting a version conflict.
      sessions.forget(sessionStream(sessionId));
      return runSession(
        sessionId,
        (now) => ({
          type: "RotateRefreshToken",
          now,
          data: { presentedRefreshTokenHash: hashes.presented, newRefreshTokenHash: hashes.next },
        }),
        context,
      );
    },

    async invalidate(sessionId: string, reason: InvalidationReason, context: CommandContext) {
      const result = await runSession(
        sessionId,
        (now) => ({ type: "InvalidateSession", now, data: { reason } }),
        context,
        // A session last changed through another instance is not in this instance's cache, but is in its
        // replica: decided there, the revocation costs one append before it is written through, not a
        // read of the stream first. A stale entry meets a version conflict and the ordinary path.
        { onEntry: (entry, now) => invalidationOn(entry, reason, now) },
      );
      return requireExisting(sessionId, result.state);
    },

    async touch(
      sessionId: string,
      facts: { ipAddress?: string | undefined; userAgent?: string | undefined; usedAt?: number },
      context: CommandContext,
    ) {
      const { usedAt, ...requestFacts } = facts;
      const result = await runSession(
        sessionId,
        // Decided as of the use (never later than now): a retry after a lost version conflict sees the
        // winning touch inside the interval and appends nothing.
        (now) => ({
          type: "TouchSession",
          now: usedAt === undefined ? now : Math.min(now, usedAt),
          data: { touchIntervalSeconds: policy.touchIntervalSeconds, ...requestFacts },
        }),
        context,
      );
      return result.state;
    },

    async expire(sessionId: string, tick: number | undefined, context: CommandContext) {
      const result = await runSession(
        sessionId,
        (now) => ({ type: "ExpireSession", now, data: { tick } }),
        context,
      );
      return result;
    },

    /**
     * Ends every session of a user. The user event takes effect on every instance at once (the
     * validation view checks it per user in O(1)); the per-session events that follow keep the read
     * models and the audit trail exact. Returns how many sessions this call ended.
     */
    async revokeAll(
      userId: string,
      reason: InvalidationReason,
      exceptSessionId: string | undefined,
      context: CommandContext,
    ): Promise<number> {
      // The sessions live just before the revocation are the ones this call ends and counts. The recycle
      // process manager fans out the same revocation with the same command ids (fanOutCommandId), so
      // whichever reaches a session first ends it and the other appends nothing; counting by the end
      // reason rather than by who appended keeps the count right either way.
      await waitForReadModel(deps.readModel, Math.max(lastPosition, await log.lastPosition()), 2_000);
      const live = (await deps.readModel.activeSessionIds(userId)).filter((id) => id !== exceptSessionId);
      const revoked = await users.handle(
        userStream(userId),
        (now) => ({ type: "RevokeUserSessions", now, data: { userId, reason, exceptSessionId } }),
        context,
      );
      if (revoked.version > lastPosition) lastPosition = revoked.version;
      const revocation = revoked.appended[0];
      const causationId = revocation?.metadata.eventId ?? context.commandId;
      let count = 0;
      for (const sessionId of live) {
        const result = await runSession(
          sessionId,
          (now) => ({ type: "InvalidateSession", now, data: { reason } }),
          { ...context, commandId: fanOutCommandId(causationId, sessionId), causationId },
        );
        if (result.state.status === "invalidated" && result.state.endReason === reason) count++;
      }
      return count;
    },

    /**
     * Who owns a session, for the ownership check before a command. It never changes, so the cached state
     * or this instance's replica entry answers; only a session known to neither is read from the log. The
     * command itself decides everything else against the log.
     */
    async ownerOf(sessionId: string): Promise<string | undefined> {
      const cached = sessions.peek(sessionStream(sessionId), 0);
      if (cached !== undefined && cached.state.status !== "none") return cached.state.userId;
      const entry = replica.getSession(sessionId);
      if (entry !== undefined) return entry.userId;
      const { state } = await sessions.read(sessionStream(sessionId));
      return state.status === "none" ? undefined : state.userId;
    },

    /** The session as the log says now (fresh even before any projection has caught up). */
    async get(sessionId: string): Promise<ExistingSession | undefined> {
      const { state } = await sessions.read(sessionStream(sessionId));
      return state.status === "none" ? undefined : state;
    },

    /**
     * The session as of at least `position` (the validation view's position for it): served from the
     * cache on the validation path, read from the log only when the cache is behind.
     */
    async getAtLeast(sessionId: string, position: number): Promise<ExistingSession | undefined> {
      const { state } = await sessions.read(sessionStream(sessionId), position);
      return state.status === "none" ? undefined : state;
    },

    /** getAtLeast's cache hit, synchronously; undefined when only a read of the log can answer. */
    cachedAtLeast(sessionId: string, position: number): ExistingSession | undefined {
      const cached = sessions.peek(sessionStream(sessionId), position);
      return cached === undefined || cached.state.status === "none" ? undefined : cached.state;
    },

    async fold(sessionId: string) {
      const { state, version } = await sessions.read(sessionStream(sessionId));
      return state.status === "none" ? undefined : validationEntryFromState(state, version);
    },

    /**
     * Waits up to `timeoutMs` for the read model to reflect everything this instance has written, then
     * says how far it got: queries answer from it either way, and their callers can tell which it was.
     */
    async readYourWrites(timeoutMs = 1_000): Promise<ReadModelFreshness> {
      const required = lastPosition;
      const position = await waitForReadModel(deps.readModel, required, timeoutMs);
      return { position, behind: Math.max(0, required - position) };
    },
  };
}

export type SessionService = ReturnType<typeof createSessionService>;

/** Evicting a reservation whose session was never created (its login failed or is still running) is moot. */
function ignoreUnknownSession(error: unknown): void {
  if (error instanceof DomainError && error.code === "session_not_found") return;
  throw error;
}

function requireExisting(sessionId: string, state: SessionState): ExistingSession {
  if (state.status === "none") throw sessionNotFound(sessionId);
  return state;
}

/** The read model's checkpoint once it reaches `position`, or the last one seen when `timeoutMs` ran out. */
async function waitForReadModel(readModel: SessionReadModel, position: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    const reached = await readModel.checkpoint();
    if (reached >= position || Date.now() >= deadline) return reached;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 25);
  }
}
