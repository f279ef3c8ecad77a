import { connectNats } from "./adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "./adapters/jetstream/event-log.ts";
import { openDatabase } from "./adapters/postgres/database.ts";
import { POSTGRES_PROJECTIONS, type RebuildResult, rebuildProjection } from "./adapters/postgres/rebuild.ts";
import { ConfigError, loadConfig } from "./config.ts";

export const REPLAY_USAGE = `Usage: tessera replay [${Object.keys(POSTGRES_PROJECTIONS).join("|")}|all] [--batch-size=N]

Rebuilds Postgres read models from log position 1 into fresh tables and swaps them in while the
service keeps running (see docs/time.md). Needs NATS_URL and DATABASE_URL. Default: all of them.`;

type Output = { log(line: string): void; error(line: string): void };

/** `tessera replay …`; returns the exit code. */
export async function runReplay(
  args: string[],
  env: Record<string, string | undefined> = process.env,
  out: Output = console,
): Promise<number> {
  const parsed = parseArgs(args);
  if ("error" in parsed) {
    out.error(`${parsed.error}\n\n${REPLAY_USAGE}`);
    return 2;
  }
  if (parsed.help) {
    out.log(REPLAY_USAGE);
    return 0;
  }
  const config = loadConfig(env);
  if (config.mode === "embedded") {
    throw new ConfigError([
      "NATS_URL and DATABASE_URL: replay rebuilds the read models of a deployment; embedded state lives only inside its serving process",
    ]);
  }
  const nc = await connectNats(config.natsUrl ?? "", "tessera-replay");
  try {
    const database = await openDatabase({ url: config.databaseUrl ?? "" });
    try {
      const log = await createJetStreamEventLog({ nc, prefix: config.prefix, ensureStream: false });
      for (const name of parsed.projections) {
        const projection = POSTGRES_PROJECTIONS[name];
        if (!projection) continue;
        out.log(`replaying ${name} from position 1…`);
        const result = await rebuildProjection({
          db: database.db,
          log,
          projection,
          batchSize: parsed.batchSize,
        });
        out.log(describeRebuild(result));
      }
      await log.close();
    } finally {
      await database.close();
    }
  } finally {
    await nc.close();
  }
  return 0;
}

export function describeRebuild(result: RebuildResult): string {
  const seconds = result.buildMs / 1000;
  const rate = seconds > 0 ? Math.round(result.position / seconds) : result.position;
  const rows = Object.entries(result.rows)
    .map(([table, count]) => `${table}: ${count} rows`)
    .join(", ");
  return (
    `${result.projection}: rebuilt to position ${result.position} in ${seconds.toFixed(2)} s (${rate} events/s); ` +
    `${rows}; ${result.swapped ? `swapped in (tables held ${result.swapMs.toFixed(0)} ms)` : `left in schema ${result.schema}`}`
  );
}

function parseArgs(
  args: string[],
): { projections: string[]; batchSize: number | undefined; help: boolean } | { error: string } {
  const names: string[] = [];
  let batchSize: number | undefined;
  let help = false;
  for (const arg of args) {
    if (arg === "--help" || arg === "-h") help = true;
    else if (arg.startsWith("--batch-size=")) {
      batchSize = Number(arg.slice("--batch-size=".length));
      if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000) {
        return { error: "--batch-size must be an integer between 1 and 100000" };
      }
    } else if (arg === "all") names.push(...Object.keys(POSTGRES_PROJECTIONS));
    else if (arg in POSTGRES_PROJECTIONS) names.push(arg);
    else return { error: `Unknown projection or option: ${arg}` };
  }
  const projections = names.length === 0 ? Object.keys(POSTGRES_PROJECTIONS) : [...new Set(names)];
  return { projections, batchSize, help };
}
