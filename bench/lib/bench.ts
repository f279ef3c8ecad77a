import type { Result } from "./report.ts";

/** How a run is tuned: `--quick` shortens every timed phase (for trying the harness, not for figures). */
export type BenchOptions = {
  quick: boolean;
  /** Scales every duration and count that only buys precision. */
  scale: number;
  log(line: string): void;
};

/** One named benchmark; `npm run bench -- <name>` runs it alone. */
export type Benchmark = {
  name: string;
  /** The issue whose acceptance criteria name this figure. */
  issue: number;
  description: string;
  /** Why this benchmark cannot run in this tree yet (the feature it measures is missing), or undefined. */
  unavailable?: () => Promise<string | undefined>;
  run(options: BenchOptions): Promise<Result[]>;
};

/** True when `path` (relative to the repo root) can be imported: how a benchmark detects a later feature. */
export async function moduleExists(path: string): Promise<boolean> {
  const { access } = await import("node:fs/promises");
  try {
    await access(new URL(`../../${path}`, import.meta.url));
    return true;
  } catch {
    return false;
  }
}
