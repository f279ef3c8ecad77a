import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { openDatabase } from "../../src/adapters/postgres/database.ts";
import { POSTGRES_PROJECTIONS, rebuildProjection } from "../../src/adapters/postgres/rebuild.ts";

/**
 * Run by bench/cases/rebuild.ts as `node <the replay command's Node flags> --import tsx
 * bench/workers/rebuild.ts <natsUrl> <prefix>`, with an IPC channel: the subject of the rebuild benchmark
 * in a process configured as `tessera replay` runs (src/cli-node-flags.ts), while the baseline stays in
 * the bench process. It lives for the whole benchmark, so the timed rebuilds (after two warm-up ones) run
 * warm, like the in-process ones did. Each request names a fresh database; the answer is the rebuild's timings and this
 * process's CPU time over the whole rebuildProjection call (shadow tables, build and swap). The bench
 * process checks the rows.
 */

type Request = { id: number; url: string; projection: string };
export type RebuildWorkerAnswer =
  | { id: number; buildMs: number; swapMs: number; position: number; cpuMs: number }
  | { id: number; error: string };

const [natsUrl = "", prefix = ""] = process.argv.slice(2);
const send = process.send?.bind(process);
if (!send) throw new Error("run with an IPC channel");

const nc = await connectNats(natsUrl, "bench-rebuild-worker");
// As `tessera replay` opens it: the stream exists already.
const log = await createJetStreamEventLog({ nc, prefix, ensureStream: false });

async function rebuild(request: Request): Promise<RebuildWorkerAnswer> {
  const projection = POSTGRES_PROJECTIONS[request.projection];
  if (!projection) return { id: request.id, error: `no projection ${request.projection}` };
  const database = await openDatabase({ url: request.url });
  try {
    // This process does nothing else meanwhile: its CPU time is the rebuild's (all threads, GC included).
    const cpu = process.cpuUsage();
    const result = await rebuildProjection({ db: database.db, log, projection });
    const used = process.cpuUsage(cpu);
    return {
      id: request.id,
      buildMs: result.buildMs,
      swapMs: result.swapMs,
      position: result.position,
      cpuMs: (used.user + used.system) / 1000,
    };
  } finally {
    await database.close();
  }
}

// One request at a time: the bench waits for each answer before it sends the next.
process.on("message", (request: Request) => {
  rebuild(request).then(send, (error: unknown) =>
    send({ id: request.id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});
process.once("disconnect", () => {
  void log.close().finally(() => nc.close());
});
send({ ready: true });
