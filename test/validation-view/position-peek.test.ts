import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compactValidationEntry } from "../../src/adapters/memory/compact-validation-entry.ts";
import { trailingPosition } from "../../src/adapters/nats-kv/position-peek.ts";
import { sessionEntry } from "./fixtures.ts";

const bytes = (text: string) => Buffer.from(text, "utf8");

/**
 * The KV watch skips decoding an entry the replica already holds, judging by the position read from the
 * entry's tail. That read must never give another number than JSON.parse would.
 */
describe("trailingPosition", () => {
  it("reads the position of every entry as the store writes it (JSON.stringify, position last)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.string(),
        fc.option(fc.string(), { nil: undefined }),
        fc.boolean(),
        (position, username, idpSessionId, compact) => {
          const entry = sessionEntry({ position, username, idpSessionId });
          const stored = compact ? compactValidationEntry(entry) : entry;
          expect(trailingPosition(bytes(JSON.stringify(stored)))).toBe(position);
        },
      ),
    );
  });

  it("answers only what JSON.parse would say the top-level position is", () => {
    const tricky = fc.constantFrom(
      '{"position":7}',
      '{"a":1,"position":7}',
      '{"a":{"position":7}}',
      '{"a":"x\\",\\"position\\":7}"}',
      '{"a\\"position":7}',
      '{"a":"x","position":07}',
      '{"a":"x","position": 7}',
      '{"a":"x","position":7 }',
      '{"a":"x","position":-7}',
      '{"a":"x","position":7.5}',
      '{"a":"x","position":1e3}',
      '{"position":1,"position":2}',
      '"position":7}',
      'position":7}',
      "",
      "}",
      '{"a":[1,{"position":7}]}',
      '{"a":"x","position":12345678901234567}',
    );
    const generated = fc
      .tuple(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })), fc.nat())
      .map(([rest, position]) => JSON.stringify({ ...rest, position }));
    fc.assert(
      fc.property(fc.oneof(tricky, generated, fc.json()), (text) => {
        const peeked = trailingPosition(bytes(text));
        if (peeked === undefined) return;
        const parsed = JSON.parse(text) as { position?: unknown };
        expect(parsed.position).toBe(peeked);
      }),
      { numRuns: 3000 },
    );
  });

  it("gives up rather than guess", () => {
    for (const text of [
      '{"a":"x","position":07}',
      '{"a":"x","position": 7}',
      '{"a":"x","position":7.5}',
      '{"a\\"position":7}',
      '{"a":{"position":7}}',
      '{"a":"x","position":12345678901234567}',
    ]) {
      expect(trailingPosition(bytes(text))).toBeUndefined();
    }
    expect(trailingPosition(bytes('{"a":"x","position":9007199254740993}'))).toBeUndefined();
    expect(trailingPosition(bytes('{"a":"x","position":0}'))).toBe(0);
    expect(trailingPosition(bytes(`{"a":"x","position":${Number.MAX_SAFE_INTEGER}}`))).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });
});
