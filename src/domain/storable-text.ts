/**
 * Text an event may carry and a read model can store. Postgres refuses NUL (U+0000) in `text` and
 * `jsonb`, and `jsonb` refuses the `\udXXX` escape JSON.stringify writes for an unpaired UTF-16
 * surrogate. New events may not hold either: the edges refuse them (src/adapters/http/storable-text.ts)
 * and so does the codec for a new SessionCreated. But the log is append-only and older events, or other
 * writers, may hold them: a row builder that passed one on would fail its batch, and the projection would
 * retry that batch for good. So every Postgres row builder stores such a string with each NUL and each
 * unpaired surrogate replaced by U+FFFD (the replacement character), and lookups by such a value find
 * nothing.
 *
 * These run on the projection hot path and in rebuilds: the common case costs one regex test per string
 * (one `includes` per JSON text), and only a hit pays for the careful replacement.
 */

export const UNSTORABLE_TEXT_MESSAGE = "must not contain NUL characters or unpaired surrogates";

export const REPLACEMENT_CHARACTER = "\ufffd";

// Any NUL or surrogate code unit. Paired surrogates (emoji) match too; the careful pass keeps them.
// Without the `u` flag the pattern sees UTF-16 code units.
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what this looks for.
const SUSPECT = /[\u0000\ud800-\udfff]/;

// ES2024's well-formedness methods (native, in every Node this runs on; the project's lib is ES2023).
// toWellFormed replaces each unpaired surrogate with U+FFFD, as wanted here.
type WellFormed = { isWellFormed(): boolean; toWellFormed(): string };
const wellFormed = (text: string) => text as unknown as WellFormed;

/** Whether `text` may be stored as it is (in a Postgres `text`, and as a string or key inside `jsonb`). */
export function isStorableText(text: string): boolean {
  return !SUSPECT.test(text) || (!text.includes("\u0000") && wellFormed(text).isWellFormed());
}

/** `text` with each NUL and each unpaired surrogate replaced by U+FFFD; the same string when none. */
export function toStorableText(text: string): string {
  if (!SUSPECT.test(text)) return text;
  // Mostly emoji (well-formed pairs): two native scans, no copy.
  const hasNul = text.includes("\u0000");
  if (!hasNul && wellFormed(text).isWellFormed()) return text;
  const formed = wellFormed(text).toWellFormed();
  return hasNul ? formed.replaceAll("\u0000", REPLACEMENT_CHARACTER) : formed;
}

export function toStorableTextOrNull(text: string | null): string | null {
  return text === null ? null : toStorableText(text);
}

// JSON.stringify writes NUL as `\u0000` and an unpaired surrogate as `\udXXX` (lowercase hex); it never
// escapes a paired one, so in its output every `\ud8XX`…`\udfXX` escape is unpaired. The backslashes before
// the `u` count: after an even run of them (`\\u0000`) the `u` is plain text, not an escape.
const UNSTORABLE_ESCAPE = /(\\+)u(?:0000|d[89a-f][0-9a-f]{2})/g;

/**
 * JSON text written by JSON.stringify, with the escapes jsonb refuses replaced by U+FFFD (so the parsed
 * value is what `toStorableText` would make of every string and key in it). `includes` first: almost no
 * JSON holds a `\u` at all.
 */
export function toStorableJsonText(json: string): string {
  return json.includes("\\u") ? json.replace(UNSTORABLE_ESCAPE, replaceEscape) : json;
}

/** Whether JSON text written by JSON.stringify holds an escape jsonb refuses (see toStorableJsonText). */
export function hasUnstorableJsonEscape(json: string): boolean {
  if (!json.includes("\\u")) return false;
  for (const match of json.matchAll(UNSTORABLE_ESCAPE)) {
    if ((match[1] as string).length % 2 === 1) return true;
  }
  return false;
}

function replaceEscape(match: string, backslashes: string): string {
  return backslashes.length % 2 === 1 ? `${backslashes.slice(1)}${REPLACEMENT_CHARACTER}` : match;
}
