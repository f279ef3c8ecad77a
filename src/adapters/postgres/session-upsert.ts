import { type QueryCreator, sql, type Transaction } from "kysely";
import type { SessionRow } from "../../app/ports.ts";
import { toStorableJsonText } from "../../domain/storable-text.ts";
import { idleTimeoutMs } from "../../projections/session-row.ts";
import { plainArray, textArray } from "./array-literal.ts";
import { isoInstant } from "./iso-instant.ts";
import type { Database } from "./schema.ts";
import { SESSION_COLUMNS } from "./session-columns.ts";

/**
 * Writing session rows: one INSERT … SELECT FROM unnest(one array per column) … ON CONFLICT, 19
 * parameters whatever the row count. A multi-row VALUES list with a parameter per cell took Postgres about
 * twice as long to parse, bind and plan, and kysely a while to build. Each array goes as the text of an
 * array literal, which node-postgres and PGlite both pass through unchanged, into a parameter typed by
 * its cast (`$1::uuid[]`): Postgres parses it while binding. Sent as text and cast in SQL
 * (`$1::text::uuid[]`), the same statement cost Postgres ~30 % more CPU (10,000 rows: 320 vs 245 ms).
 *
 * Building the arrays and running the statement are separate steps so that a rebuild can build them while
 * the previous statement is still running.
 *
 * Text the log may hold but Postgres cannot store (NUL, unpaired surrogates) is stored with U+FFFD in its
 * place, in text columns (textArray) and in jsonb strings and keys (jsonArray): see storable-text.ts. The
 * live projection and a rebuild both build their rows here, so they store the same.
 */

/** Rows per statement: bounds one statement's size for very large batches. */
export const SESSION_ROWS_PER_STATEMENT = 5_000;

/** The rows as one array literal per column (in SESSION_COLUMNS order), ready for `writeSessionRows`. */
export type SessionColumnArrays = { count: number; columns: string[] };

export function sessionColumnArrays(rows: readonly SessionRow[]): SessionColumnArrays {
  const n = rows.length;
  const id = new Array<string>(n);
  const userId = new Array<string>(n);
  const username = new Array<string>(n);
  const kind = new Array<string>(n);
  const status = new Array<string>(n);
  const roles = new Array<string>(n);
  const groups = new Array<string>(n);
  const client = new Array<string | null>(n);
  const ipAddress = new Array<string | null>(n);
  const userAgent = new Array<string | null>(n);
  const createdAt = new Array<string>(n);
  const lastActivityAt = new Array<string>(n);
  const expiresAt = new Array<string>(n);
  const idleTimeoutSeconds = new Array<number>(n);
  const idleExpiresAt = new Array<string | null>(n);
  const endedAt = new Array<string | null>(n);
  const endReason = new Array<string | null>(n);
  const metadata = new Array<string>(n);
  const lastPosition = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const row = rows[i] as SessionRow;
    id[i] = row.id;
    userId[i] = row.userId;
    username[i] = row.username;
    kind[i] = row.kind;
    status[i] = row.status;
    roles[i] = JSON.stringify(row.roles);
    groups[i] = JSON.stringify(row.groups);
    client[i] = row.client;
    ipAddress[i] = row.ipAddress;
    userAgent[i] = row.userAgent;
    createdAt[i] = isoInstant(row.createdAt);
    lastActivityAt[i] = isoInstant(row.lastActivityAt);
    expiresAt[i] = isoInstant(row.expiresAt);
    idleTimeoutSeconds[i] = Math.round(idleTimeoutMs(row) / 1000);
    idleExpiresAt[i] = row.idleExpiresAt === null ? null : isoInstant(row.idleExpiresAt);
    endedAt[i] = row.endedAt === null ? null : isoInstant(row.endedAt);
    endReason[i] = row.endReason;
    metadata[i] = JSON.stringify(row.metadata);
    lastPosition[i] = row.lastPosition;
  }
  return {
    count: n,
    columns: [
      plainArray(id),
      textArray(userId),
      textArray(username),
      textArray(kind),
      textArray(status),
      jsonArray(roles),
      jsonArray(groups),
      textArray(client),
      textArray(ipAddress),
      textArray(userAgent),
      bareArray(createdAt),
      bareArray(lastActivityAt),
      bareArray(expiresAt),
      bareArray(idleTimeoutSeconds),
      bareArray(idleExpiresAt),
      bareArray(endedAt),
      textArray(endReason),
      jsonArray(metadata),
      bareArray(lastPosition),
    ],
  };
}

/**
 * plainArray of values that need no check: instants from isoInstant and integers. (The regex plainArray
 * runs on every element was a third of the time spent on these columns.)
 */
function bareArray(values: readonly (string | number | null)[]): string {
  const parts = new Array<string | number>(values.length);
  for (let i = 0; i < values.length; i++) parts[i] = values[i] ?? "NULL";
  return `{${parts.join(",")}}`;
}

/**
 * textArray of JSON texts (as JSON.stringify writes them), with one escape pass over all of them instead
 * of one per element (half the time for 10,000 small documents). JSON.stringify never writes a raw U+0000
 * (it escapes control characters), so that character can stand for the element separator until the
 * escaping is done. The escapes jsonb refuses (`\u0000`, unpaired surrogates) become U+FFFD in the same
 * single pass over all of them: one `includes` when there are none.
 */
export function jsonArray(values: readonly string[]): string {
  if (values.length === 0) return "{}";
  const joined = toStorableJsonText(values.join("\u0000"));
  return `{"${joined.replace(/["\\]/g, "\\$&").replaceAll("\u0000", '","')}"}`;
}

/** The SQL type of each column's array, in SESSION_COLUMNS order. */
const ARRAY_TYPES = [
  "uuid[]",
  "text[]",
  "text[]",
  "text[]",
  "text[]",
  "jsonb[]",
  "jsonb[]",
  "text[]",
  "text[]",
  "text[]",
  "timestamptz[]",
  "timestamptz[]",
  "timestamptz[]",
  "int4[]",
  "timestamptz[]",
  "timestamptz[]",
  "text[]",
  "jsonb[]",
  "int8[]",
] as const;

/**
 * The statement that writes the rows (not run: it also serves as a CTE). `update`: a row that exists is
 * replaced, unless it is already at or past the new one's position (a row never moves back to an older
 * state). `insert`: a row that exists is left alone.
 */
export function sessionRowsInsert(
  db: QueryCreator<Database>,
  arrays: SessionColumnArrays,
  onConflict: "update" | "insert",
) {
  const unnest = sql`select * from unnest(${sql.join(
    arrays.columns.map((literal, i) => sql`${literal}::${sql.raw(ARRAY_TYPES[i] as string)}`),
  )})`;
  // Built with kysely so that withSchema (rebuilds write into a side schema) qualifies the table.
  const insert = db
    .insertInto("sessions")
    .columns([...SESSION_COLUMNS])
    .expression(unnest);
  return onConflict === "insert"
    ? insert.onConflict((oc) => oc.column("id").doNothing())
    : insert.onConflict((oc) =>
        oc
          .column("id")
          .doUpdateSet((eb) => ({
            user_id: eb.ref("excluded.user_id"),
            username: eb.ref("excluded.username"),
            kind: eb.ref("excluded.kind"),
            status: eb.ref("excluded.status"),
            roles: eb.ref("excluded.roles"),
            groups: eb.ref("excluded.groups"),
            client: eb.ref("excluded.client"),
            ip_address: eb.ref("excluded.ip_address"),
            user_agent: eb.ref("excluded.user_agent"),
            created_at: eb.ref("excluded.created_at"),
            last_activity_at: eb.ref("excluded.last_activity_at"),
            expires_at: eb.ref("excluded.expires_at"),
            idle_timeout_seconds: eb.ref("excluded.idle_timeout_seconds"),
            idle_expires_at: eb.ref("excluded.idle_expires_at"),
            ended_at: eb.ref("excluded.ended_at"),
            end_reason: eb.ref("excluded.end_reason"),
            metadata: eb.ref("excluded.metadata"),
            last_position: eb.ref("excluded.last_position"),
          }))
          // Belt and braces with the checkpoint: a row never moves back to an older state.
          .whereRef("sessions.last_position", "<", "excluded.last_position"),
      );
}

/** Runs sessionRowsInsert; returns how many rows were written. */
export async function writeSessionRows(
  trx: Transaction<Database>,
  arrays: SessionColumnArrays,
  onConflict: "update" | "insert",
): Promise<number> {
  if (arrays.count === 0) return 0;
  const result = await sessionRowsInsert(trx, arrays, onConflict).executeTakeFirst();
  // PGlite's dialect leaves the count out when it is 0.
  return Number(result.numInsertedOrUpdatedRows ?? 0);
}

/** `sessionColumnArrays` + `writeSessionRows`, SESSION_ROWS_PER_STATEMENT rows per statement. */
export async function upsertSessionRows(
  trx: Transaction<Database>,
  rows: readonly SessionRow[],
): Promise<void> {
  for (let i = 0; i < rows.length; i += SESSION_ROWS_PER_STATEMENT) {
    await writeSessionRows(trx, sessionColumnArrays(rows.slice(i, i + SESSION_ROWS_PER_STATEMENT)), "update");
  }
}
