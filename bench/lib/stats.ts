/** Small order statistics for benchmark samples (nearest-rank percentiles: no interpolation to flatter a tail). */

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** The middle value; with an even count, the mean of the two middle ones. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Sequential runs of `round` with the baseline and the subject taking turns, so drift hits both alike. */
export async function alternate<T>(
  rounds: number,
  run: (which: "baseline" | "subject", round: number) => Promise<T>,
  first: "baseline-first" | "subject-first" = "baseline-first",
): Promise<{ baseline: T[]; subject: T[] }> {
  const baseline: T[] = [];
  const subject: T[] = [];
  for (let round = 0; round < rounds; round++) {
    // ABBA order: a machine that slowly heats up or frees up does not favour one side.
    if ((round % 2 === 0) === (first === "baseline-first")) {
      baseline.push(await run("baseline", round));
      subject.push(await run("subject", round));
    } else {
      subject.push(await run("subject", round));
      baseline.push(await run("baseline", round));
    }
  }
  return { baseline, subject };
}

/** Median of per-round ratios: each pair ran back to back, so a noisy neighbour hits both sides of a pair. */
export function pairedRatio(baseline: readonly number[], subject: readonly number[]): number {
  const ratios = subject.map((value, i) => value / (baseline[i] ?? Number.NaN));
  return median(ratios);
}
