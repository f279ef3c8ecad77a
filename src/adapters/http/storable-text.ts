import { z } from "zod";
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from "../../domain/storable-text.ts";

/**
 * The edge's side of src/domain/storable-text.ts: text that may reach an event. Postgres refuses NUL in
 * `text` and `jsonb`, and `jsonb` refuses the `\udXXX` escape JSON.stringify writes for an unpaired UTF-16
 * surrogate. The log would take such an event, but every Postgres projection would then have to store a
 * replacement for it, so the edge refuses it first. Lookups (ids in paths and queries) are held to the
 * same rule: a value that can never be stored can never be found.
 */

/** Every string in a JSON-like value, object keys included, is storable. Iterative: any depth is safe. */
export function isStorableJson(value: unknown): boolean {
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (typeof item === "string") {
      if (!isStorableText(item)) return false;
    } else if (Array.isArray(item)) {
      for (const element of item) pending.push(element);
    } else if (typeof item === "object" && item !== null) {
      for (const [key, member] of Object.entries(item)) {
        if (!isStorableText(key)) return false;
        pending.push(member);
      }
    }
  }
  return true;
}

/** Whether a JSON-like value nests at most `maxDepth` arrays/objects deep. Iterative: any input is safe. */
export function nestsAtMost(value: unknown, maxDepth: number): boolean {
  const pending: Array<[unknown, number]> = [[value, 0]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop() as [unknown, number];
    if (typeof item !== "object" || item === null) continue;
    if (depth + 1 > maxDepth) return false;
    for (const member of Array.isArray(item) ? item : Object.values(item)) pending.push([member, depth + 1]);
  }
  return true;
}

/** `z.string()` bounded in length and refusing what Postgres cannot store (see above). */
export function storableText(options: { min?: number; max: number }) {
  return z
    .string()
    .min(options.min ?? 0)
    .max(options.max)
    .refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);
}
