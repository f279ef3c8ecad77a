import { type Kysely, sql } from "kysely";
import { describe, expect, it } from "vitest";
import { textArray } from "../../src/adapters/postgres/array-literal.ts";
import { isoInstant } from "../../src/adapters/postgres/iso-instant.ts";
import type { Database } from "../../src/adapters/postgres/schema.ts";
import { jsonArray } from "../../src/adapters/postgres/session-upsert.ts";
import { toStorableJsonText } from "../../src/domain/storable-text.ts";
import { backends, useBackend } from "./backends.ts";

/** The shortcuts the session rows take when they are written must give what the plain ways give. */

const documents: unknown[] = [
  [],
  ["user"],
  ['a "quoted" role', "back\\slash", "comma,brace{}", "NULL"],
  { source: "bench", nested: { n: 1, list: [1, "two", null, true] } },
  { text: "tab\tnewline\ncontrol\u0001 ünïcödé ✓ \u2028" },
  {},
  "just a string",
  null,
];

describe("jsonArray", () => {
  it("writes what textArray writes for JSON texts, with the escapes jsonb refuses made storable", () => {
    const texts = documents.map((document) => JSON.stringify(document));
    expect(jsonArray(texts)).toBe(textArray(texts));
    // (U+0000 and unpaired surrogates only here: jsonb refuses their escapes, so they become U+FFFD.)
    const unstorable = [{ nul: "\u0000" }, { "\ud800": "\udfff" }, ...documents].map((d) =>
      JSON.stringify(d),
    );
    expect(jsonArray(unstorable)).toBe(textArray(unstorable.map(toStorableJsonText)));
    expect(jsonArray(unstorable)).not.toMatch(/\\u(0000|d[89a-f])/);
    expect(jsonArray([])).toBe(textArray([]));
    expect(jsonArray(['"'])).toBe(textArray(['"']));
  });
});

describe("isoInstant", () => {
  it("formats every instant as toISOString does", () => {
    const instants = [0, -1, 1, 86_399_999, 86_400_000, -86_400_000, 951_782_400_000, 1_709_164_800_123];
    instants.push(-62_198_755_200_000, 253_402_300_799_999, 253_402_300_800_000, 8.64e15, -8.64e15);
    let seed = 7;
    for (let i = 0; i < 20_000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      instants.push(Math.round((seed / 2_147_483_648 - 0.5) * 2 * 8.64e15));
      instants.push(Date.now() + (i - 10_000) * 86_399_937);
    }
    for (const ms of instants) expect(isoInstant(new Date(ms))).toBe(new Date(ms).toISOString());
    expect(() => isoInstant(new Date(Number.NaN))).toThrow(RangeError);
  });
});

describe.each(backends)("jsonArray on $name", (backend) => {
  let db: Kysely<Database>;

  useBackend(backend, (handle) => {
    db = handle.db;
  });

  it("comes back from a jsonb[] parameter as the documents it was made of", async () => {
    const texts = documents.map((document) => JSON.stringify(document));
    const { rows } = await sql<{ document: unknown }>`
      select unnest(${jsonArray(texts)}::jsonb[]) as document
    `.execute(db);
    expect(rows.map((row) => row.document)).toEqual(documents);
  });
});
