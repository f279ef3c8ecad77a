import type { ColumnType } from "kysely";
import type { DomainEventType, RecordedActor, RecordedSource } from "../../domain/events.ts";

/** The `audit_events` table as kysely sees it (see migrations/0003_audit_events.ts). */

type Json<T> = ColumnType<T, string, string>;

export interface AuditEventsTable {
  position: number;
  occurred_at: ColumnType<Date, Date, Date>;
  type: DomainEventType;
  session_id: string | null;
  user_id: string | null;
  actor_kind: RecordedActor["kind"];
  actor_id: string;
  source: RecordedSource;
  reason: string | null;
  data: Json<Record<string, unknown>>;
  metadata: Json<Record<string, unknown>>;
}
