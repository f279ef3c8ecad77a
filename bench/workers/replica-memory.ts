import { randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import { createValidationReplica } from "../../src/adapters/memory/validation-replica.ts";
import type { ValidationReplica } from "../../src/app/ports.ts";
import { hashSecret } from "../../src/domain/tokens.ts";

/**
 * Run by bench/cases/replica-memory.ts as `node --expose-gc --import tsx bench/workers/replica-memory.ts
 * <count>`, in a fresh process so nothing else is on the heap. Entries reach the replica as the KV watch
 * delivers them — each one JSON-decoded from its own bytes — and heapUsed is read after a full GC before
 * and after. Prints one JSON line.
 */

const count = Number(process.argv[2] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");

const now = Date.now();
/** One entry's KV value, as the validation projection writes it. */
function entryJson(i: number): string {
  const userId = `user-${i % 1_000}@example.com`;
  return JSON.stringify({
    sessionId: uuidv7(),
    userId,
    username: userId,
    kind: "web",
    status: "active",
    tokenHash: hashSecret(randomBytes(32).toString("base64url")),
    refreshGeneration: 0,
    roles: ["user"],
    groups: ["staff"],
    scope: ["sessions:read", "sessions:write"],
    createdAt: now - i,
    expiresAt: now + 3_600_000,
    idleTimeoutSeconds: 1_800,
    lastActivityAt: now - i,
    binding: { mode: "off" },
    position: i + 1,
  });
}

function heapAfterGc(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

/** Heap bytes per entry that `fill` leaves reachable (it returns the structure holding them). */
async function measure(fill: () => unknown): Promise<number> {
  const before = heapAfterGc();
  const held = fill();
  const after = heapAfterGc();
  // Keep what was filled alive until after the measurement.
  if (held === undefined) throw new Error("nothing held");
  return (after - before) / count;
}

async function main() {
  const replicaOnly = await measure(() => {
    const replica = createValidationReplica();
    for (let i = 0; i < count; i++) replica.offerSession(JSON.parse(entryJson(i)));
    if (replica.size !== count) throw new Error(`replica holds ${replica.size}`);
    return replica;
  });

  let withIndex: number | undefined;
  try {
    const { createDeadlineIndex, indexReplica } = (await import("../../src/app/deadline-index.ts")) as {
      createDeadlineIndex: () => unknown;
      indexReplica: (replica: ValidationReplica, index: unknown) => ValidationReplica;
    };
    withIndex = await measure(() => {
      const replica = indexReplica(createValidationReplica(), createDeadlineIndex());
      for (let i = 0; i < count; i++) replica.offerSession(JSON.parse(entryJson(i)));
      return replica;
    });
  } catch {
    // No deadline index in this tree.
  }

  const plainMap = await measure(() => {
    const map = new Map<string, unknown>();
    for (let i = 0; i < count; i++) {
      const entry = JSON.parse(entryJson(i)) as { sessionId: string };
      map.set(entry.sessionId, entry);
    }
    return map;
  });

  console.log(JSON.stringify({ count, replicaOnly, withIndex, plainMap }));
}

await main();
