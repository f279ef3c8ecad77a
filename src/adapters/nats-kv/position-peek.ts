/**
 * The `position` of a stored validation entry, read from the end of its JSON without parsing it.
 *
 * Entries are written as `JSON.stringify(entry)` with `position` as the last key, so the bytes end in
 * `,"position":<digits>}`. Those bytes can only be the top-level object's last member: the final `}`
 * closes the top-level object, the digits before it are a number (inside a string they would need a
 * closing quote before the `}`), and a key is preceded by `,` or `{` (an escaped quote inside a longer
 * key is preceded by a backslash). JSON.parse keeps the last of duplicate keys, so this is the value it
 * would give. Anything else — whitespace, another key order, a fraction — answers undefined, and the
 * caller decodes the entry as before.
 */

const KEY = '"position":';
const KEY_BYTES = Array.from(KEY, (c) => c.charCodeAt(0));
const CLOSE = 0x7d; // }
const COMMA = 0x2c; // ,
const OPEN = 0x7b; // {
const ZERO = 0x30;
/** Number.MAX_SAFE_INTEGER has 16 digits; up to it the digits add up exactly as JSON.parse reads them. */
const MAX_DIGITS = 16;

export function trailingPosition(data: Uint8Array): number | undefined {
  let end = data.length - 1;
  if (end < 0 || data[end] !== CLOSE) return undefined;
  let position = 0;
  let digits = 0;
  let i = end - 1;
  for (; i >= 0; i--) {
    const digit = (data[i] as number) - ZERO;
    if (digit < 0 || digit > 9) break;
    digits++;
    if (digits > MAX_DIGITS) return undefined;
  }
  // i is the byte before the digits. JSON has no leading zeros: "0" alone is fine, "012" is not.
  if (digits === 0 || (digits > 1 && data[i + 1] === ZERO)) return undefined;
  for (let j = i + 1; j < end; j++) position = position * 10 + ((data[j] as number) - ZERO);
  if (position > Number.MAX_SAFE_INTEGER) return undefined;
  end = i;
  const keyStart = end - KEY_BYTES.length + 1;
  if (keyStart < 1) return undefined;
  for (let k = 0; k < KEY_BYTES.length; k++) if (data[keyStart + k] !== KEY_BYTES[k]) return undefined;
  const before = data[keyStart - 1];
  return before === COMMA || before === OPEN ? position : undefined;
}
