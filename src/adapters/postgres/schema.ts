import type { ColumnType } from "kysely";
import type { EndReason, SessionKind } from "../../domain/events.ts";
import type { SessionStatus } from "../../domain/session-state.ts";
import type { AuditEventsTable } from "./audit-schema.ts";

/**
 * The read model's tables as kysely sees them (snake_case, as in SQL). jsonb columns are written as JSON
 * text because node-postgres would turn a JS array into a Postgres array literal, not JSON; they read back
 * parsed. int8 columns read back as numbers (see database.ts): log positions stay far below 2^53.
 */

type Json<T> = ColumnType<T, string, string>;
type Timestamp = ColumnType<Date, Date, Date>;

export interface SessionsTable {
  id: string;
  user_id: string;
  username: string;
  kind: SessionKind;
  status: SessionStatus;
  roles: Json<string[]>;
  groups: Json<string[]>;
  client: string | null;
  ip_address: string | null;
  user_agent: string | null;
  created_at: Timestamp;
  last_activity_at: Timestamp;
  expires_at: Timestamp;
  idle_timeout_seconds: number;
  idle_expires_at: ColumnType<Date | null, Date | null, Date | null>;
  ended_at: ColumnType<Date | null, Date | null, Date | null>;
  end_reason: EndReason | null;
  metadata: Json<Record<string, unknown>>;
  last_position: number;
}

export interface ProjectionCheckpointsTable {
  name: string;
  position: number;
  updated_at: Timestamp;
}

export interface Database {
  sessions: SessionsTable;
  projection_checkpoints: ProjectionCheckpointsTable;
  audit_events: AuditEventsTable;
}
