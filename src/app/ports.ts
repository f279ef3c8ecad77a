import type { DomainEventType, EndReason, SessionKind } from "../domain/events.ts";
import type { SessionStatus } from "../domain/session-state.ts";
import type { AuditRow } from "../projections/audit-row.ts";
import type { UserValidationEntry, ValidationEntry } from "../projections/validation-entry.ts";

/**
 * Read-side ports used by the application services. Adapters: NATS KV + in-memory replica (validation),
 * Postgres/PGlite (list, stats).
 */

/** The shared validation view (a NATS KV bucket, or its in-memory twin in embedded mode). */
export interface ValidationStore {
  getSession(sessionId: string): Promise<ValidationEntry | undefined>;
  getUser(userId: string): Promise<UserValidationEntry | undefined>;
  /** Writes the entry unless the stored one already has the same or a later position. */
  putSession(entry: ValidationEntry): Promise<void>;
  putUser(entry: UserValidationEntry): Promise<void>;
  /**
   * Removes the entries of sessions that ended long ago (cleanup), so the view — and what every instance
   * loads from it at start — does not grow with every session ever created. A forgotten session's token is
   * still refused: a miss falls back to the session's own stream.
   */
  forgetSessions(sessionIds: readonly string[]): Promise<void>;
  /**
   * Feeds every current and future entry to the callbacks until the returned stop is called. Resolves once
   * every entry present at the call has been delivered.
   */
  watch(listener: ValidationStoreListener): Promise<{ stop(): Promise<void> }>;
  /** The projection's checkpoint: the last log position fully written to the store. */
  getCheckpoint(name: string): Promise<number>;
  setCheckpoint(name: string, position: number): Promise<void>;
}

export type ValidationStoreListener = {
  onSession(entry: ValidationEntry): void;
  onUser(entry: UserValidationEntry): void;
  /**
   * Whether the listener already holds the session at `position` or later, so that entry would change
   * nothing for it: a store that must decode entries may skip those (e.g. this instance's own writes
   * coming back through the KV watch). Entries are still delivered when it cannot tell the position.
   */
  holdsSession?(sessionId: string, position: number): boolean;
};

/** This instance's in-memory copy of the validation view. Lookups are synchronous and allocation-free. */
export interface ValidationReplica {
  getSession(sessionId: string): ValidationEntry | undefined;
  getUser(userId: string): UserValidationEntry | undefined;
  /** Applies an entry if it is newer (by position) than what the replica holds. */
  offerSession(entry: ValidationEntry): void;
  offerUser(entry: UserValidationEntry): void;
  /** Resolves once the replica holds the session at `position` or later, or after `timeoutMs`. */
  waitForSession(sessionId: string, position: number, timeoutMs: number): Promise<boolean>;
  /**
   * Forgets sessions whose absolute expiry is before `cutoff`: they can never validate again (a renewal
   * cannot revive an overdue session), so keeping them would only grow memory with every session ever made.
   * A later lookup misses and falls back to the KV view. Returns how many were dropped.
   */
  evictExpiredBefore(cutoff: number): number;
  readonly size: number;
}

export type SessionRow = {
  id: string;
  userId: string;
  username: string;
  kind: SessionKind;
  status: SessionStatus;
  roles: string[];
  groups: string[];
  client: string | null;
  ipAddress: string | null;
  userAgent: string | null;
  createdAt: Date;
  lastActivityAt: Date;
  expiresAt: Date;
  idleExpiresAt: Date | null;
  endedAt: Date | null;
  endReason: EndReason | null;
  metadata: Record<string, unknown>;
  /** Log position of the last event applied to this row. */
  lastPosition: number;
};

export type StatusFilter = "active" | "ended" | "all";

export type ListSessionsQuery = {
  userId?: string | undefined;
  status: StatusFilter;
  limit: number;
  /** Opaque cursor from a previous page. */
  cursor?: string | undefined;
  /** "Now", for deciding which active-looking rows are in fact overdue. */
  now: number;
};

export type SessionPage = { sessions: SessionRow[]; total: number; nextCursor: string | null };

export type SessionStats = {
  active: number;
  expired: number;
  invalidated: number;
  recycled: number;
  total: number;
  createdToday: number;
  lastActivityAt: Date | null;
};

/**
 * How current a read-model answer is: the log position the read model had applied when it was queried
 * (the answer reflects at least every event up to it), and how many log positions it was still short of this
 * instance's own last write (0: the answer includes everything written through this instance).
 */
export type ReadModelFreshness = { position: number; behind: number };

export interface SessionReadModel {
  getSession(sessionId: string): Promise<SessionRow | undefined>;
  listSessions(query: ListSessionsQuery): Promise<SessionPage>;
  /** Stats for one user, or for everyone when userId is undefined. */
  stats(userId: string | undefined, now: number): Promise<SessionStats>;
  /** Ids of sessions that are still active in the read model but whose deadline has passed at `now`. */
  overdueSessionIds(now: number, limit: number): Promise<string[]>;
  /** Ids of a user's sessions that are active in the read model. */
  activeSessionIds(userId: string): Promise<string[]>;
  /**
   * Deletes ended rows whose end is older than `endedBefore`, in chunks; `beforeDelete` gets each chunk's
   * ids first (to prune other views of the same sessions: a failure there leaves the rows for the next
   * run). Returns how many rows were deleted. Events are kept.
   */
  pruneEnded(endedBefore: number, beforeDelete?: (sessionIds: string[]) => Promise<void>): Promise<number>;
  /** The log position the read model has applied up to. */
  checkpoint(): Promise<number>;
}

/** A user as the directory knows them. The password hash never leaves the directory adapter. */
export type UserRecord = {
  id: string;
  username: string;
  roles: string[];
  groups: string[];
  disabled: boolean;
  createdAt: Date;
  updatedAt: Date;
};

/**
 * The user directory (Postgres, or PGlite in embedded mode). Passwords are argon2id hashes; verification
 * takes about the same time whether or not the username exists.
 */
export interface UserDirectory {
  verifyCredentials(username: string, password: string): Promise<UserRecord | undefined>;
  findById(id: string): Promise<UserRecord | undefined>;
  findByUsername(username: string): Promise<UserRecord | undefined>;
  create(input: {
    username: string;
    password: string;
    roles: string[];
    groups: string[];
    id?: string;
  }): Promise<UserRecord>;
  setPassword(id: string, password: string): Promise<UserRecord>;
  setClaims(id: string, claims: { roles: string[]; groups: string[] }): Promise<UserRecord>;
  setDisabled(id: string, disabled: boolean): Promise<UserRecord>;
}

export type AuditQuery = {
  userId?: string | undefined;
  sessionId?: string | undefined;
  types?: DomainEventType[] | undefined;
  /** Inclusive bounds on occurred_at. */
  from?: Date | undefined;
  to?: Date | undefined;
  order: "asc" | "desc";
  limit: number;
  /** Position of the last row of the previous page (exclusive). */
  after?: number | undefined;
};

/** The audit read model (Postgres/PGlite `audit_events`): one row per event of the log. */
export interface AuditReadModel {
  list(query: AuditQuery): Promise<{ rows: AuditRow[]; nextAfter: number | null }>;
  /**
   * In log order, every event up to `at` of the user's sessions whose lifetime could cover `at` (created
   * by then, absolute cap after it), and the user's own events up to `at`.
   */
  historyAsOf(userId: string, at: Date): Promise<AuditRow[]>;
  /** The log position the audit model has applied up to. */
  checkpoint(): Promise<number>;
}
