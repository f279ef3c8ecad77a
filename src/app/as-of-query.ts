import type { Claims, RecordedEvent, SessionEvent, UserEvent } from "../domain/events.ts";
import { isSessionEvent } from "../domain/events.ts";
import {
  type ActiveSession,
  evolve,
  initialSessionState,
  overdueCause,
  type SessionState,
} from "../domain/session-state.ts";
import type { AuditRow } from "../projections/audit-row.ts";
import {
  evolveUserValidationEntry,
  isRecycledByUser,
  isRevokedByUser,
  type UserValidationEntry,
} from "../projections/validation-entry.ts";
import type { AuditReadModel } from "./ports.ts";

/**
 * "Which sessions did this user have at instant T, with which claims?" — answered by folding the log up
 * to T, never by guessing from today's rows. The events come from the audit read model (one row per
 * event, each carrying the event's data), and are folded with the domain's own `evolve`, so the answer
 * is what validation would have said at T: created by T, not ended by T, not past a deadline at T (even if
 * the SessionExpired was only written later), not covered by a revoke-all made by T, and not holding
 * claims other than the user's after a claims change made by T.
 */

export type AsOfAnswer = {
  userId: string;
  at: Date;
  /** Sessions active at `at`, as they stood then (expiry, last activity, roles and groups). */
  sessions: ActiveSession[];
  /** The user's claims at `at` from the last UserClaimsChanged before it, if there was one. */
  claims: Claims | undefined;
  /** The log position the answer reflects; `complete` is false if the audit model lagged the log. */
  position: number;
  complete: boolean;
};

export type AsOfQueryDeps = {
  audit: AuditReadModel;
  /** The log's current end: the answer waits (bounded) for the audit model to reach it. */
  lastPosition: () => Promise<number>;
  waitMs?: number | undefined;
};

export function createAsOfQuery(deps: AsOfQueryDeps) {
  const waitMs = deps.waitMs ?? 2_000;

  async function caughtUp(): Promise<{ position: number; complete: boolean }> {
    const target = await deps.lastPosition();
    const deadline = Date.now() + waitMs;
    let delay = 5;
    for (;;) {
      const position = await deps.audit.checkpoint();
      if (position >= target) return { position, complete: true };
      if (Date.now() >= deadline) return { position, complete: false };
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 100);
    }
  }

  return {
    async sessionsAsOf(userId: string, at: Date): Promise<AsOfAnswer> {
      const { position, complete } = await caughtUp();
      const rows = await deps.audit.historyAsOf(userId, at);
      return { userId, at, position, complete, ...foldAsOf(rows, at.getTime()) };
    },
  };
}

export type AsOfQuery = ReturnType<typeof createAsOfQuery>;

/** The pure part: fold audit rows (in log order, all at or before `at`) into the sessions active at `at`. */
export function foldAsOf(
  rows: AuditRow[],
  at: number,
): { sessions: ActiveSession[]; claims: Claims | undefined } {
  const states = new Map<string, SessionState>();
  let user: UserValidationEntry | undefined;
  for (const row of [...rows].sort((a, b) => a.position - b.position)) {
    const event = asRecordedEvent(row);
    if (isSessionEvent(event)) {
      const id = event.data.sessionId;
      states.set(id, evolve(states.get(id) ?? initialSessionState(), event));
    } else {
      user = evolveUserValidationEntry(user, event as RecordedEvent<UserEvent>);
    }
  }
  const sessions: ActiveSession[] = [];
  for (const state of states.values()) {
    if (state.status !== "active") continue;
    if (overdueCause(state, at) !== undefined) continue;
    if (isRevokedByUser(user, state.sessionId, state.createdAt)) continue;
    // Validation refuses a session holding other claims from the moment the user's claims change.
    if (isRecycledByUser(user, state)) continue;
    sessions.push(state);
  }
  sessions.sort((a, b) => a.createdAt - b.createdAt || a.sessionId.localeCompare(b.sessionId));
  return { sessions, claims: user?.claims };
}

/**
 * An audit row back in the shape of the event it records. The row's data is the event's data minus token
 * hashes, which nothing here reads.
 */
function asRecordedEvent(row: AuditRow): RecordedEvent<SessionEvent> | RecordedEvent<UserEvent> {
  return {
    type: row.type,
    version: 1,
    data: row.data,
    position: row.position,
  } as unknown as RecordedEvent<SessionEvent> | RecordedEvent<UserEvent>;
}
