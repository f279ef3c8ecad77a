import { cpus, loadavg, totalmem } from "node:os";
import { BENCHMARKS } from "./cases/index.ts";
import type { BenchOptions } from "./lib/bench.ts";
import { cleanupEverything } from "./lib/environment.ts";
import { closeHttpAgent } from "./lib/http.ts";
import { markdownTable, notesSection, type Result } from "./lib/report.ts";

/**
 * `npm run bench` runs every benchmark; `npm run bench -- validate-http event-append` runs those only;
 * `--list` names them; `--quick` shortens the timed phases (to try the harness, not for figures);
 * `--json <file>` also writes the results as JSON. Every benchmark brings up and removes its own
 * prefix, database and processes.
 */

const USAGE = `Usage: npm run bench -- [name ...] [--list] [--quick] [--json <file>]`;

type Args = { names: string[]; list: boolean; quick: boolean; json: string | undefined };

function parseArgs(argv: string[]): Args {
  const args: Args = { names: [], list: false, quick: false, json: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--list") args.list = true;
    else if (arg === "--quick") args.quick = true;
    else if (arg === "--json") args.json = argv[++i];
    else if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else if (arg.startsWith("-")) throw new Error(`Unknown option ${arg}\n${USAGE}`);
    else args.names.push(arg);
  }
  return args;
}

function machine(): string {
  const cores = cpus();
  return `${cores.length} × ${cores[0]?.model.trim() ?? "unknown CPU"}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${process.platform}`;
}

/** The 1-minute load average: on a shared 2-core machine, anything near or above 2 means contended figures. */
const load = () => loadavg()[0]?.toFixed(1) ?? "?";

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    for (const b of BENCHMARKS) console.log(`${b.name.padEnd(20)} issue ${b.issue}  ${b.description}`);
    return 0;
  }
  const unknown = args.names.filter((name) => !BENCHMARKS.some((b) => b.name === name));
  if (unknown.length > 0) {
    console.error(
      `Unknown benchmark(s): ${unknown.join(", ")}. Known: ${BENCHMARKS.map((b) => b.name).join(", ")}`,
    );
    return 2;
  }
  const selected =
    args.names.length === 0 ? BENCHMARKS : BENCHMARKS.filter((b) => args.names.includes(b.name));
  const options: BenchOptions = {
    quick: args.quick,
    scale: args.quick ? 0.4 : 1,
    log: (line) => console.log(line),
  };

  process.once("SIGINT", () => {
    console.error("\ninterrupted: cleaning up");
    cleanupEverything().finally(() => process.exit(130));
  });

  const started = performance.now();
  const loadAtStart = load();
  console.log(`machine: ${machine()}; load average at start ${load()}`);
  const results: Result[] = [];
  const skipped: string[] = [];
  const failed: string[] = [];
  for (const bench of selected) {
    const reason = await bench.unavailable?.();
    if (reason) {
      console.log(`\n## ${bench.name}: skipped (${reason})`);
      skipped.push(`${bench.name}: ${reason}`);
      continue;
    }
    console.log(`\n## ${bench.name} — ${bench.description}`);
    const t0 = performance.now();
    try {
      const out = await bench.run(options);
      results.push(...out);
      for (const r of out) {
        const ratio = r.ratio === undefined ? "" : `, ratio ${r.ratio.toFixed(2)}`;
        console.log(
          `  => ${r.title}: ${r.subject.value.toFixed(2)} ${r.subject.unit}${ratio} (${r.pass === undefined ? "info" : r.pass ? "pass" : "MISS"})`,
        );
      }
    } catch (error) {
      console.error(`  FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      failed.push(bench.name);
    }
    console.log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s, load average now ${load()})`);
  }
  closeHttpAgent();

  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  console.log(
    `\n# Results (${seconds} s; command: npm run bench${args.names.length ? ` -- ${args.names.join(" ")}` : ""})\n`,
  );
  console.log(`machine: ${machine()}; load average at start ${loadAtStart}, at end ${load()}\n`);
  console.log(markdownTable(results));
  const notes = notesSection(results);
  if (notes) console.log(`\n${notes}`);
  if (skipped.length > 0) console.log(`\nskipped:\n${skipped.map((s) => `- ${s}`).join("\n")}`);
  if (failed.length > 0) console.log(`\nfailed: ${failed.join(", ")}`);
  if (args.json) {
    const { writeFile } = await import("node:fs/promises");
    await writeFile(
      args.json,
      `${JSON.stringify({ machine: machine(), results, skipped, failed }, null, 2)}\n`,
    );
  }
  // A missed target is a finding to report, not a crash; a benchmark that could not run is a failure.
  return failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (error) => {
    console.error(error instanceof Error ? error.message : String(error));
    await cleanupEverything();
    process.exit(1);
  },
);
