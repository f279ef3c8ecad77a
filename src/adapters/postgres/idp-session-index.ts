import type { Kysely, Transaction } from "kysely";
import type { IdpSessionIndex } from "../../app/idp-ports.ts";
import type { RecordedEvent } from "../../domain/events.ts";
import { CheckpointConflictError, type ProjectionTarget } from "../../projections/runner.ts";
import type { Database } from "./schema.ts";

/**
 * The `idp_sessions` table (migration 0004): session id → IdP `sid`, written by its own small projection
 * from SessionCreated events that carry an idpSessionId. Rows are only ever inserted (a session's sid
 * never changes) and never updated when the session ends: a logout that finds an ended session ends
 * nothing (the decider's no-op), so a row pointing at an ended session is harmless.
 */

export const IDP_SESSION_PROJECTION = "idp_sessions";

interface IdpSessionsTable {
  session_id: string;
  idp_session_id: string;
  user_id: string;
  created_at: Date;
}

type IdpDatabase = Database & { idp_sessions: IdpSessionsTable };

const withIdp = (db: Kysely<Database>) => db.withTables<{ idp_sessions: IdpSessionsTable }>();

export function createIdpSessionIndex(db: Kysely<Database>): IdpSessionIndex {
  const idp = withIdp(db);
  return {
    async sessionIdsForIdpSession(idpSessionId) {
      const rows = await idp
        .selectFrom("idp_sessions")
        .select(["session_id", "user_id"])
        .where("idp_session_id", "=", idpSessionId)
        .execute();
      return rows.map((row) => ({ sessionId: row.session_id, userId: row.user_id }));
    },
    checkpoint: () => readCheckpoint(idp),
  };
}

/** The projection that keeps `idp_sessions`: one transaction per batch with its checkpoint. */
export function createIdpSessionProjection(db: Kysely<Database>): ProjectionTarget {
  const idp = withIdp(db);
  let expected: number | undefined;
  return {
    name: IDP_SESSION_PROJECTION,
    async checkpoint() {
      expected = await readCheckpoint(idp);
      return expected;
    },
    async applyBatch(batch: RecordedEvent[]) {
      if (batch.length === 0) return;
      expected = await idp.transaction().execute(async (trx) => {
        const stored = await lockCheckpoint(trx);
        if (expected !== undefined && stored !== expected) {
          throw new CheckpointConflictError(IDP_SESSION_PROJECTION, expected, stored);
        }
        let last = stored;
        const rows: IdpSessionsTable[] = [];
        for (const event of batch) {
          if (event.position <= stored) continue;
          last = Math.max(last, event.position);
          if (event.type === "SessionCreated" && event.data.idpSessionId !== undefined) {
            rows.push({
              session_id: event.data.sessionId,
              idp_session_id: event.data.idpSessionId,
              user_id: event.data.userId,
              created_at: new Date(event.data.createdAt),
            });
          }
        }
        if (last === stored) return stored;
        if (rows.length > 0) {
          await trx
            .insertInto("idp_sessions")
            .values(rows)
            .onConflict((oc) => oc.column("session_id").doNothing())
            .execute();
        }
        await trx
          .updateTable("projection_checkpoints")
          .set({ position: last, updated_at: new Date() })
          .where("name", "=", IDP_SESSION_PROJECTION)
          .execute();
        return last;
      });
    },
  };
}

async function readCheckpoint(db: Kysely<IdpDatabase>): Promise<number> {
  const row = await db
    .selectFrom("projection_checkpoints")
    .select("position")
    .where("name", "=", IDP_SESSION_PROJECTION)
    .executeTakeFirst();
  return row ? Number(row.position) : 0;
}

async function lockCheckpoint(trx: Transaction<IdpDatabase>): Promise<number> {
  const select = () =>
    trx
      .selectFrom("projection_checkpoints")
      .select("position")
      .where("name", "=", IDP_SESSION_PROJECTION)
      .forUpdate()
      .executeTakeFirst();
  let row = await select();
  if (!row) {
    await trx
      .insertInto("projection_checkpoints")
      .values({ name: IDP_SESSION_PROJECTION, position: 0, updated_at: new Date() })
      .onConflict((oc) => oc.column("name").doNothing())
      .execute();
    row = await select();
  }
  if (!row) throw new Error(`Projection ${IDP_SESSION_PROJECTION}: checkpoint row missing`);
  return Number(row.position);
}
