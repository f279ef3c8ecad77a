import { spawn } from "node:child_process";
import type { Benchmark } from "../lib/bench.ts";
import { REPO_ROOT } from "../lib/processes.ts";
import { formatNumber, judge, type Target } from "../lib/report.ts";

const ENTRIES = 100_000;
const TARGET: Target = { kind: "max", value: 1024, unit: "bytes/session" };

type Measured = { count: number; replicaOnly: number; withIndex?: number; plainMap: number };

function runWorker(count: number): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--expose-gc", "--import", "tsx", "bench/workers/replica-memory.ts", String(count)],
      { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err += chunk.toString("utf8");
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`memory worker exited ${code}: ${err.slice(-2000)}`));
      try {
        resolve(JSON.parse(out.trim().split("\n").at(-1) ?? "") as Measured);
      } catch (error) {
        reject(error);
      }
    });
  });
}

/**
 * Memory per active session in the in-memory validation replica: heapUsed after a full GC, before and
 * after 100k entries arrive as the KV watch delivers them (JSON-decoded one by one), in a fresh process.
 * The baseline is the naive replica: the decoded objects kept as they are in a Map.
 */
export const replicaMemory: Benchmark = {
  name: "replica-memory",
  issue: 2,
  description:
    "heap bytes per active session in the validation replica (100k entries) vs a Map of decoded entries",
  run: async (options) => {
    const m = await runWorker(Math.round(ENTRIES * Math.max(options.scale, 0.5)));
    const value = m.withIndex ?? m.replicaOnly;
    return [
      {
        bench: "replica-memory",
        title: `heap per active session in the validation replica${m.withIndex === undefined ? "" : " + expiry deadline index"}, ${formatNumber(m.count)} entries`,
        subject: {
          value,
          unit: "bytes/session",
          label: "Tessera",
          detail: `replica alone ${formatNumber(m.replicaOnly)} B/session${m.withIndex === undefined ? "" : `, with the deadline index (as the application wiring has it) ${formatNumber(m.withIndex)} B/session`}`,
        },
        baseline: {
          value: m.plainMap,
          unit: "bytes/session",
          label: "Map of the JSON-decoded entries",
        },
        ratio: value / m.plainMap,
        target: TARGET,
        pass: judge(TARGET, value, undefined),
        notes: ["ratio here is Tessera's bytes over the baseline's: lower is better"],
      },
    ];
  },
};
