import { describe, expect, it } from "vitest";
import { textArray } from "../../src/adapters/postgres/array-literal.ts";
import { jsonArray } from "../../src/adapters/postgres/session-upsert.ts";
import {
  hasUnstorableJsonEscape,
  isStorableText,
  toStorableJsonText,
  toStorableText,
} from "../../src/domain/storable-text.ts";

const NUL = "\u0000";
const HIGH = "\ud83d"; // the first half of 😀 (U+1F600), alone
const LOW = "\ude00"; // its second half, alone
const R = "\ufffd";

describe("text Postgres can store", () => {
  it("replaces each NUL and each unpaired surrogate with U+FFFD, and keeps pairs", () => {
    expect(toStorableText(`a${NUL}b`)).toBe(`a${R}b`);
    expect(toStorableText(`${HIGH}x${LOW}`)).toBe(`${R}x${R}`);
    expect(toStorableText(`${LOW}${HIGH}`)).toBe(`${R}${R}`);
    expect(toStorableText(`end${HIGH}`)).toBe(`end${R}`);
    expect(toStorableText(`😀${NUL}😀${HIGH}`)).toBe(`😀${R}😀${R}`);
    expect(toStorableText(`${NUL}${NUL}`)).toBe(`${R}${R}`);
  });

  it("hands back the very same string when there is nothing to replace", () => {
    const plain = "Mozilla/5.0 (X11; Linux x86_64) 😀 \\u0000";
    expect(toStorableText(plain)).toBe(plain);
    expect(isStorableText(plain)).toBe(true);
    expect(isStorableText(`a${NUL}`)).toBe(false);
    expect(isStorableText(HIGH)).toBe(false);
    expect(isStorableText(LOW)).toBe(false);
    // Called repeatedly (no state carried between calls by a global regex).
    for (let i = 0; i < 3; i++) expect(isStorableText(`x${NUL}`)).toBe(false);
  });

  it("rewrites the JSON escapes jsonb refuses, in strings and keys, and nothing else", () => {
    const value = { [`k${NUL}`]: [`v${HIGH}`, `${LOW}`, "😀"], plain: "\\u0000 is text", tab: "\t\u0001" };
    const json = JSON.stringify(value);
    expect(hasUnstorableJsonEscape(json)).toBe(true);
    const stored = toStorableJsonText(json);
    expect(hasUnstorableJsonEscape(stored)).toBe(false);
    expect(JSON.parse(stored)).toEqual({
      [`k${R}`]: [`v${R}`, R, "😀"],
      plain: "\\u0000 is text",
      tab: "\t\u0001",
    });
  });

  it("counts the backslashes before a \\u: an escaped backslash followed by u0000 is plain text", () => {
    for (const text of ["\\u0000", "\\\\u0000", "\\ud800", "a\\\\\\\\ud83d"]) {
      const json = JSON.stringify({ text });
      expect(hasUnstorableJsonEscape(json)).toBe(false);
      expect(toStorableJsonText(json)).toBe(json);
    }
    // An odd run: escaped backslashes, then a real NUL escape.
    const json = JSON.stringify({ text: `\\\\${NUL}` });
    expect(hasUnstorableJsonEscape(json)).toBe(true);
    expect(JSON.parse(toStorableJsonText(json))).toEqual({ text: `\\\\${R}` });
  });

  it("gives the same string back when a JSON text needs nothing", () => {
    const json = JSON.stringify({ a: "b", c: ["😀", "\u00e9"] });
    expect(toStorableJsonText(json)).toBe(json);
  });
});

describe("array literals for the session upsert", () => {
  it("textArray stores unstorable text with U+FFFD, still escaping quotes and backslashes", () => {
    expect(textArray([`a${NUL}"b\\`, `${HIGH}`, null, "plain"])).toBe(
      `{"a${R}\\"b\\\\","${R}",NULL,"plain"}`,
    );
  });

  it("jsonArray rewrites refused escapes across all elements in one pass", () => {
    const literal = jsonArray([JSON.stringify([`r${NUL}`]), JSON.stringify({ [HIGH]: "v" }), "[]"]);
    expect(literal).toBe(`{"[\\"r${R}\\"]","{\\"${R}\\":\\"v\\"}","[]"}`);
  });
});
