/**
 * Postgres array literals (`{a,"b c",NULL}`) built directly, for statements that pass one array per
 * column (`unnest($1::text::uuid[], …)`). node-postgres would build the same text from a JS array, but
 * with two regex replaces per element; these skip quoting where the values cannot need it, and join parts
 * (appending to one string builds a chain of partial strings: more garbage). The result is sent as a text
 * parameter and cast in SQL, so every driver passes it through unchanged.
 */

import { toStorableText } from "../../domain/storable-text.ts";

// Inside double quotes only `"` and `\` need a backslash.
const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;
// Those, or a NUL or surrogate that Postgres may not store (storable-text.ts): one test finds all of them.
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the characters looked for.
const NEEDS_CARE = /["\\\u0000\ud800-\udfff]/;
// Letters, digits and the punctuation of numbers, UUIDs and ISO-8601 instants; not the word NULL.
const PLAIN = /^(?!null$)[A-Za-z0-9:.+-]+$/i;

/**
 * Any strings (NULL for null): every element quoted, `"` and `\` escaped, and made storable (a NUL or an
 * unpaired surrogate becomes U+FFFD, see storable-text.ts).
 */
export function textArray(values: readonly (string | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    parts[i] =
      value === null || value === undefined ? "NULL" : `"${NEEDS_CARE.test(value) ? careful(value) : value}"`;
  }
  return `{${parts.join(",")}}`;
}

/** The rare element that needs more than quotes: escapes, a replacement, or neither (an emoji). */
function careful(value: string): string {
  const stored = toStorableText(value);
  return NEEDS_ESCAPE.test(stored) ? stored.replace(ESCAPE, "\\$&") : stored;
}

/**
 * Values whose text form has no quotes, backslashes, commas, braces or spaces (numbers, ISO instants,
 * UUIDs): written bare. Anything else is quoted as textArray does, so a surprising value is still safe.
 */
export function plainArray(values: readonly (string | number | null)[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value === null || value === undefined) parts[i] = "NULL";
    else if (typeof value === "number") parts[i] = Number.isFinite(value) ? String(value) : `"${value}"`;
    else if (PLAIN.test(value)) parts[i] = value;
    else parts[i] = `"${NEEDS_ESCAPE.test(value) ? value.replace(ESCAPE, "\\$&") : value}"`;
  }
  return `{${parts.join(",")}}`;
}
