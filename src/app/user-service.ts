import type {
  Claims,
  InvalidationReason,
  RecordedEvent,
  RecycleReason,
  SessionEvent,
  UserClaimsChanged,
  UserEvent,
  UserSessionsRevoked,
} from "../domain/events.ts";
import { sessionStream, userStream } from "../domain/events.ts";
import type { Clock, EventLog, IdGenerator } from "../domain/ports.ts";
import { decide } from "../domain/session-decider.ts";
import { evolve, initialSessionState, type SessionState } from "../domain/session-state.ts";
import {
  decideUser,
  evolveUser,
  initialUserState,
  normalizeClaims,
  sameClaims,
  type UserCommand,
  type UserState,
} from "../domain/user-decider.ts";
import { waitForCheckpoint } from "../projections/runner.ts";
import { validationEntryFromState } from "../projections/validation-entry.ts";
import {
  type CommandContext,
  type CommandObserver,
  createCommandHandler,
  type HandleResult,
} from "./command-handler.ts";
import type { SessionReadModel, UserDirectory, ValidationReplica } from "./ports.ts";

/**
 * Changes that concern a user rather than one session: claims changes, and the fan-out that ends a user's
 * sessions one by one (what the recycle process manager and the recycle APIs run).
 *
 * Fan-out commands are conditional and decided on each session's own stream, so running one twice, or
 * concurrently with revokeAll on another instance, appends each ending at most once: the second run finds
 * the session ended (a no-op) or hits the log's de-duplication (same command id, see fanOutCommandId).
 */

/** The command id of the ending a user-level event causes on one session: the same on every retry. */
export function fanOutCommandId(causeEventId: string, sessionId: string): string {
  return `fanout:${causeEventId}:${sessionId}`;
}

export type UserServiceDeps = {
  log: EventLog;
  clock: Clock;
  ids: IdGenerator;
  replica: ValidationReplica;
  readModel: SessionReadModel;
  /** When present, claims set through Tessera are also written to the directory (password logins read it). */
  directory?: UserDirectory | undefined;
  /** How long a fan-out waits for the read model to reach the cause before giving up (default 10 s). */
  readModelTimeoutMs?: number | undefined;
  /** Sessions ended in parallel by one fan-out (default 16). */
  concurrency?: number | undefined;
  /** Told of every append and conflict (metrics count every event, whichever service appends it). */
  observer?: CommandObserver | undefined;
};

/** A session's state plus the log position of its creation, so a fan-out can leave later sessions alone. */
type FanOutState = { session: SessionState; createdPosition: number | undefined };

type FanOutCommand =
  | {
      type: "RecycleIfStale";
      now: number;
      data: {
        reason: RecycleReason;
        causeEventId: string | undefined;
        /** Only sessions created before this position are candidates (Infinity: every session)… */
        causePosition: number;
        /** …or at or before this instant (the validator's rule, see isRecycledByUser). */
        changedAt: number | undefined;
        /** Sessions already holding these claims are kept; undefined recycles regardless. */
        claims: Claims | undefined;
      };
    }
  | {
      type: "InvalidateIfCovered";
      now: number;
      data: {
        reason: InvalidationReason;
        causePosition: number;
        revokedBefore: number;
        exceptSessionId: string | undefined;
      };
    };

function decideFanOut(command: FanOutCommand, state: FanOutState): SessionEvent[] {
  const session = state.session;
  if (session.status !== "active") return [];
  const createdBefore = (position: number) =>
    state.createdPosition === undefined ? true : state.createdPosition < position;
  switch (command.type) {
    case "RecycleIfStale": {
      const d = command.data;
      const covered =
        createdBefore(d.causePosition) || (d.changedAt !== undefined && session.createdAt <= d.changedAt);
      if (!covered) return [];
      if (d.claims !== undefined && sameClaims(session, d.claims)) return [];
      return decide(
        {
          type: "RecycleSession",
          now: command.now,
          data: { reason: d.reason, causeEventId: d.causeEventId },
        },
        session,
      );
    }
    case "InvalidateIfCovered": {
      const d = command.data;
      if (session.sessionId === d.exceptSessionId) return [];
      // Either test covers it: the validator refuses by creation instant (createdAt <= revokedBefore), and
      // log order catches a session created just before on an instance whose clock runs ahead.
      if (!createdBefore(d.causePosition) && session.createdAt > d.revokedBefore) return [];
      return decide({ type: "InvalidateSession", now: command.now, data: { reason: d.reason } }, session);
    }
    default: {
      const unreachable: never = command;
      return unreachable;
    }
  }
}

function evolveFanOut(state: FanOutState, event: SessionEvent): FanOutState {
  // The command handler folds the events it reads as recorded (with their position); that is how the
  // creation's position is known. Events this handler appends itself never create a session.
  const position = (event as Partial<RecordedEvent>).position;
  const createdPosition =
    state.session.status === "none" && event.type === "SessionCreated" && typeof position === "number"
      ? position
      : state.createdPosition;
  return { session: evolve(state.session, event), createdPosition };
}

export type ClaimsChange = {
  userId: string;
  /** False when the user already had exactly these claims: nothing was appended. */
  changed: boolean;
  claims: Claims;
  event: RecordedEvent<UserClaimsChanged> | undefined;
};

export function createUserService(deps: UserServiceDeps) {
  const { log, clock, ids, replica, readModel } = deps;
  const readModelTimeoutMs = deps.readModelTimeoutMs ?? 10_000;
  const concurrency = deps.concurrency ?? 16;
  const users = createCommandHandler<UserState, UserCommand, UserEvent>({
    log,
    clock,
    ids,
    decider: { decide: decideUser, evolve: evolveUser, initialState: initialUserState },
    observer: deps.observer,
  });
  const sessions = createCommandHandler<FanOutState, FanOutCommand, SessionEvent>({
    log,
    clock,
    ids,
    decider: {
      decide: decideFanOut,
      evolve: evolveFanOut,
      initialState: () => ({ session: initialSessionState(), createdPosition: undefined }),
    },
    // Fan-outs touch each session once; a big cache would only hold dead states.
    cacheSize: 2_000,
    observer: deps.observer,
  });

  async function runFanOut(
    sessionId: string,
    build: (now: number) => FanOutCommand,
    context: CommandContext,
  ): Promise<HandleResult<FanOutState>> {
    const result = await sessions.handle(sessionStream(sessionId), build, context);
    // This instance refuses the session at once, before the validation projection echoes the event back.
    if (result.state.session.status !== "none") {
      replica.offerSession(validationEntryFromState(result.state.session, result.version));
    }
    return result;
  }

  /** Live session ids of a user as of at least `position` (waits for the read model, bounded). */
  async function liveSessionIds(userId: string, position: number): Promise<string[]> {
    if (!(await waitForCheckpoint(readModel, position, readModelTimeoutMs))) {
      // Listing now could miss sessions the read model has not seen; the caller retries later.
      throw new Error(
        `session read model has not reached position ${position} within ${readModelTimeoutMs} ms`,
      );
    }
    return readModel.activeSessionIds(userId);
  }

  /** Runs `each` over the ids, `concurrency` at a time; returns how many said they ended a session. */
  async function forEachSession(idsToEnd: string[], each: (sessionId: string) => Promise<boolean>) {
    let next = 0;
    let ended = 0;
    const worker = async () => {
      while (next < idsToEnd.length) {
        const sessionId = idsToEnd[next++] as string;
        if (await each(sessionId)) ended++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, idsToEnd.length) }, worker));
    return ended;
  }

  const endedBy = (result: HandleResult<FanOutState>, status: "recycled" | "invalidated") =>
    (result.appended.length > 0 || result.duplicate) && result.state.session.status === status;

  async function fanOutClaims(event: RecordedEvent<UserClaimsChanged>): Promise<number> {
    const candidates = await liveSessionIds(event.data.userId, event.position);
    return forEachSession(candidates, async (sessionId) => {
      const result = await runFanOut(
        sessionId,
        (now) => ({
          type: "RecycleIfStale",
          now,
          data: {
            reason: "claims_changed",
            causeEventId: event.metadata.eventId,
            causePosition: event.position,
            changedAt: Date.parse(event.data.changedAt),
            claims: event.data.after,
          },
        }),
        causedBy(event, sessionId),
      );
      return endedBy(result, "recycled");
    });
  }

  async function fanOutRevocation(event: RecordedEvent<UserSessionsRevoked>): Promise<number> {
    const candidates = await liveSessionIds(event.data.userId, event.position);
    const revokedBefore = Date.parse(event.data.revokedBefore);
    return forEachSession(candidates, async (sessionId) => {
      const result = await runFanOut(
        sessionId,
        (now) => ({
          type: "InvalidateIfCovered",
          now,
          data: {
            reason: event.data.reason,
            causePosition: event.position,
            revokedBefore,
            exceptSessionId: event.data.exceptSessionId,
          },
        }),
        causedBy(event, sessionId),
      );
      return endedBy(result, "invalidated");
    });
  }

  return {
    /**
     * Records the user's roles and groups (normalised). Appends UserClaimsChanged only when they differ
     * from the recorded ones; the recycle process manager then recycles every live session that differs.
     */
    async changeClaims(userId: string, claims: Claims, context: CommandContext): Promise<ClaimsChange> {
      const stream = userStream(userId);
      // "Unchanged" is decided without appending, so it must be decided on the log, not a cached state
      // another instance may have moved on from.
      users.forget(stream);
      const result = await users.handle(
        stream,
        (now) => ({ type: "ChangeUserClaims", now, data: { userId, after: claims } }),
        context,
      );
      if (deps.directory) {
        const known = await deps.directory.findById(userId);
        if (known) await deps.directory.setClaims(userId, normalizeClaims(claims));
      }
      const event = result.appended[0] as RecordedEvent<UserClaimsChanged> | undefined;
      const state = result.state;
      return {
        userId,
        changed: event !== undefined,
        claims: state.status === "known" && state.claims ? state.claims : normalizeClaims(claims),
        event,
      };
    },

    /** The user's last recorded claims change (claims and instant), read from the log. */
    async lastClaimsChange(userId: string): Promise<{ claims: Claims; changedAt: number } | undefined> {
      const { events } = await log.readStream(userStream(userId));
      for (let i = events.length - 1; i >= 0; i--) {
        const event = events[i];
        if (event?.type === "UserClaimsChanged")
          return { claims: event.data.after, changedAt: Date.parse(event.data.changedAt) };
      }
      return undefined;
    },

    /**
     * The process manager's step for one user event: ends each live session the event covers. Safe to
     * repeat. Returns how many sessions this call (or an earlier attempt of it) ended.
     */
    async fanOut(event: RecordedEvent<UserEvent>): Promise<number> {
      switch (event.type) {
        case "UserClaimsChanged":
          return fanOutClaims(event as RecordedEvent<UserClaimsChanged>);
        case "UserSessionsRevoked":
          return fanOutRevocation(event as RecordedEvent<UserSessionsRevoked>);
        default: {
          const unreachable: never = event;
          return unreachable;
        }
      }
    },

    /**
     * Recycles every live session of a user now (the explicit recycle APIs), whatever their claims.
     * Returns how many were recycled. Retrying with the same command id recycles nothing twice.
     */
    async recycleUser(userId: string, reason: RecycleReason, context: CommandContext): Promise<number> {
      const candidates = await liveSessionIds(userId, await log.lastPosition());
      return forEachSession(candidates, async (sessionId) => {
        const result = await runFanOut(
          sessionId,
          (now) => ({
            type: "RecycleIfStale",
            now,
            data: {
              reason,
              causeEventId: undefined,
              causePosition: Number.POSITIVE_INFINITY,
              changedAt: undefined,
              claims: undefined,
            },
          }),
          { ...context, commandId: `${context.commandId}:${sessionId}` },
        );
        return endedBy(result, "recycled");
      });
    },

    /**
     * Recycles one session because of a claims change (the JWT path: the caller's own session must be
     * refused at once, whatever the process manager is doing). True when it is recycled now.
     */
    async recycleSession(
      sessionId: string,
      cause: RecordedEvent<UserClaimsChanged> | undefined,
      context: CommandContext,
    ): Promise<boolean> {
      const result = await runFanOut(
        sessionId,
        (now) => ({
          type: "RecycleIfStale",
          now,
          data: {
            reason: "claims_changed",
            causeEventId: cause?.metadata.eventId,
            causePosition: Number.POSITIVE_INFINITY,
            changedAt: undefined,
            claims: undefined,
          },
        }),
        cause ? causedBy(cause, sessionId) : context,
      );
      return result.state.session.status === "recycled";
    },
  };
}

export type UserService = ReturnType<typeof createUserService>;

/** Metadata of a fan-out command: same id on every retry, traced back to the user event. */
function causedBy(event: RecordedEvent<UserEvent>, sessionId: string): CommandContext {
  return {
    commandId: fanOutCommandId(event.metadata.eventId, sessionId),
    correlationId: event.metadata.correlationId,
    causationId: event.metadata.eventId,
    actor: event.metadata.actor,
    source: event.metadata.source,
    traceparent: event.traceparent,
  };
}
