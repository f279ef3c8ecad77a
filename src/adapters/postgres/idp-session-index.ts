import type { Kysely } from "kysely";
import type { IdpSessionIndex } from "../../app/idp-ports.ts";
import { isStorableText, toStorableText } from "../../domain/storable-text.ts";
import type { ProjectionTarget } from "../../projections/runner.ts";
import { createCheckpointedProjection, readCheckpoint } from "./checkpointed-projection.ts";
import type { Database } from "./schema.ts";

/**
 * The `idp_sessions` table (migration 0004): session id → IdP `sid`, written by its own small projection
 * from SessionCreated events that carry an idpSessionId. Rows are only ever inserted (a session's sid
 * never changes) and never updated when the session ends: a logout that finds an ended session ends
 * nothing (the decider's no-op), so a row pointing at an ended session is harmless.
 *
 * A sid or user id Postgres cannot store (NUL, unpaired surrogates: storable-text.ts) is stored with
 * U+FFFD in its place, and a lookup by such a sid finds nothing.
 */

export const IDP_SESSION_PROJECTION = "idp_sessions";

interface IdpSessionsTable {
  session_id: string;
  idp_session_id: string;
  user_id: string;
  created_at: Date;
}

const withIdp = (db: Kysely<Database>) => db.withTables<{ idp_sessions: IdpSessionsTable }>();

export function createIdpSessionIndex(db: Kysely<Database>): IdpSessionIndex {
  const idp = withIdp(db);
  return {
    async sessionIdsForIdpSession(idpSessionId) {
      // A logout token's sid is the IdP's text: Postgres would refuse a query holding a NUL.
      if (!isStorableText(idpSessionId)) return [];
      const rows = await idp
        .selectFrom("idp_sessions")
        .select(["session_id", "user_id"])
        .where("idp_session_id", "=", idpSessionId)
        .execute();
      return rows.map((row) => ({ sessionId: row.session_id, userId: row.user_id }));
    },
    checkpoint: () => readCheckpoint(db, IDP_SESSION_PROJECTION),
  };
}

/** The projection that keeps `idp_sessions`: one transaction per batch with its checkpoint. */
export function createIdpSessionProjection(db: Kysely<Database>): ProjectionTarget {
  return createCheckpointedProjection(db, IDP_SESSION_PROJECTION, async (trx, fresh) => {
    const rows: IdpSessionsTable[] = [];
    for (const event of fresh) {
      if (event.type === "SessionCreated" && event.data.idpSessionId !== undefined) {
        rows.push({
          session_id: event.data.sessionId,
          idp_session_id: toStorableText(event.data.idpSessionId),
          user_id: toStorableText(event.data.userId),
          created_at: new Date(event.data.createdAt),
        });
      }
    }
    if (rows.length === 0) return;
    await withIdp(trx)
      .insertInto("idp_sessions")
      .values(rows)
      .onConflict((oc) => oc.column("session_id").doNothing())
      .execute();
  });
}
