import { type Kysely, sql } from "kysely";
import { describe, expect, it } from "vitest";
import { plainArray, textArray } from "../../src/adapters/postgres/array-literal.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { backends, useBackend } from "./backends.ts";

/** The array literals the sessions upsert sends must come back from Postgres exactly as written. */

const awkwardText = [
  "plain",
  "",
  "with space",
  'a "quoted" word',
  "back\\slash",
  "\\",
  '"',
  "comma,brace{}",
  "NULL",
  "null",
  " padded ",
  "tab\tand\nnewline",
  "ünïcödé ✓",
  '["user"]',
  '{"k":"v \\" \\\\"}',
  null,
];

describe.each(backends)("array literals on $name", (backend) => {
  let db: Kysely<Database>;

  useBackend(backend, (handle) => {
    db = handle.db;
  });

  const roundTrip = async <T>(literal: string, type: string) => {
    const { rows } = await sql<{ value: T[] }>`select ${literal}::text::${sql.raw(type)}[] as value`.execute(
      db,
    );
    return rows[0]?.value;
  };

  it("textArray keeps every string (quotes, backslashes, braces, the word NULL) and null", async () => {
    expect(await roundTrip(textArray(awkwardText), "text")).toEqual(awkwardText);
    expect(await roundTrip(textArray([]), "text")).toEqual([]);
  });

  it("plainArray writes numbers, UUIDs and instants bare and anything else safely quoted", async () => {
    const ids = ["01943a5e-7c00-7a3b-8c1d-2e3f4a5b6c7d", "00000000-0000-0000-0000-000000000000"];
    expect(await roundTrip(plainArray(ids), "uuid")).toEqual(ids);
    // node-postgres returns int8[] elements as strings; PGlite as numbers.
    const numbers = await roundTrip<string | number | null>(plainArray([1, 0, -5, 2 ** 40, null]), "int8");
    expect(numbers?.map((n) => (n === null ? null : Number(n)))).toEqual([1, 0, -5, 2 ** 40, null]);
    const instants = ["2030-01-15T08:00:00.000Z", null, "1999-12-31T23:59:59.999Z"];
    const back = await roundTrip<Date | null>(plainArray(instants), "timestamptz");
    expect(back?.map((d) => d?.toISOString() ?? null)).toEqual(instants);
    expect(await roundTrip(plainArray(awkwardText), "text")).toEqual(awkwardText);
  });

  it("jsonb elements go through as JSON text", async () => {
    const values = [JSON.stringify(["a", 'b"c']), JSON.stringify({ nested: { x: "\\" } })];
    expect(await roundTrip(textArray(values), "jsonb")).toEqual([["a", 'b"c'], { nested: { x: "\\" } }]);
  });
});
