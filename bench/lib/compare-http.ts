import type { BenchOptions } from "./bench.ts";
import { type LoadRequest, type LoadResult, runLoad } from "./http.ts";
import { formatNumber, judge, type Result, type Target } from "./report.ts";
import { alternate, median, pairedRatio } from "./stats.ts";

export type HttpSide = {
  url: string;
  requests: readonly LoadRequest[];
  expectStatus: number;
  serverPid?: number | undefined;
};

export type HttpComparison = {
  subjectRate: number;
  baselineRate: number;
  /** Server CPU µs per request (median over rounds), when measurable. */
  subjectCpuUs: number | undefined;
  baselineCpuUs: number | undefined;
  ratio: number;
  subjectDetail: string;
  baselineDetail: string;
};

/**
 * The load shape of every HTTP comparison: enough connections and pipelining that the server, not the
 * single-threaded client, is the bottleneck on this 2-core machine (the client runs in the bench process,
 * each server in its own child process).
 */
export const HTTP_LOAD = { connections: 32, pipelining: 1 };

/** Warm both servers up, then take turns (ABBA) and compare paired rounds. */
export async function compareHttp(
  options: BenchOptions,
  sides: { baseline: HttpSide; subject: HttpSide },
  shape: { rounds?: number; seconds?: number; warmupSeconds?: number; connections?: number } = {},
): Promise<HttpComparison> {
  const rounds = shape.rounds ?? 4;
  const seconds = (shape.seconds ?? 3) * options.scale;
  const warmup = (shape.warmupSeconds ?? 2) * options.scale;
  const load = (side: HttpSide, durationSeconds: number) =>
    runLoad({
      ...HTTP_LOAD,
      connections: shape.connections ?? HTTP_LOAD.connections,
      ...side,
      durationSeconds,
    });

  for (const which of ["baseline", "subject"] as const) {
    const warm = await load(sides[which], warmup);
    options.log(`  warm-up ${which}: ${formatNumber(warm.rate)} req/s, ${warm.failed} failed`);
    if (warm.ok === 0) throw new Error(`${which} answered no request with ${sides[which].expectStatus}`);
  }
  const runs = await alternate(rounds, async (which, round) => {
    const result = await load(sides[which], seconds);
    const cpu =
      result.serverCpuUsPerRequest === undefined
        ? ""
        : `, server ${formatNumber(result.serverCpuUsPerRequest)} µs CPU/req`;
    options.log(
      `  round ${round + 1} ${which}: ${formatNumber(result.rate)} req/s (p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms${cpu}, client ${Math.round(result.clientCpuShare * 100)}% CPU, ${result.failed} failed)`,
    );
    return result;
  });
  const rate = (results: LoadResult[]) => median(results.map((r) => r.rate));
  const detail = (results: LoadResult[]) => {
    const failed = results.reduce((sum, r) => sum + r.failed, 0);
    const cpu = results.map((r) => r.serverCpuUsPerRequest).filter((v): v is number => v !== undefined);
    const cpuText = cpu.length > 0 ? `, server CPU ${formatNumber(median(cpu))} µs/request` : "";
    const client = median(results.map((r) => r.clientCpuShare));
    return `median of ${rounds} × ${formatNumber(seconds)} s: ${formatNumber(rate(results))} req/s, latency p50 ${median(results.map((r) => r.p50Ms))} ms / p99 ${median(results.map((r) => r.p99Ms))} ms${cpuText}, load generator at ${Math.round(client * 100)}% of a core; rounds ${results.map((r) => formatNumber(r.rate)).join(", ")}; ${failed} failed requests`;
  };
  const cpuOf = (results: LoadResult[]) => {
    const cpu = results.map((r) => r.serverCpuUsPerRequest).filter((v): v is number => v !== undefined);
    return cpu.length > 0 ? median(cpu) : undefined;
  };
  return {
    subjectCpuUs: cpuOf(runs.subject),
    baselineCpuUs: cpuOf(runs.baseline),
    subjectRate: rate(runs.subject),
    baselineRate: rate(runs.baseline),
    ratio: pairedRatio(
      runs.baseline.map((r) => r.rate),
      runs.subject.map((r) => r.rate),
    ),
    subjectDetail: detail(runs.subject),
    baselineDetail: detail(runs.baseline),
  };
}

/** The same comparison seen as server CPU per request (robust to a busy machine; higher ratio is better). */
export function cpuNote(
  comparison: HttpComparison,
  what = "",
  names = { subject: "Tessera", baseline: "bare Fastify" },
): string[] {
  const { subjectCpuUs, baselineCpuUs } = comparison;
  if (subjectCpuUs === undefined || baselineCpuUs === undefined) return [];
  return [
    `server CPU per request: ${names.subject} ${formatNumber(subjectCpuUs)} µs, ${names.baseline} ${formatNumber(baselineCpuUs)} µs (CPU-efficiency ratio ${(baselineCpuUs / subjectCpuUs).toFixed(2)})${what}`,
  ];
}

/** The report row of an HTTP comparison: both sides' rates, the paired ratio, judged against `target`. */
export function comparisonResult(options: {
  bench: string;
  title: string;
  comparison: HttpComparison;
  unit?: { subject: string; baseline: string };
  subjectLabel?: string;
  baselineLabel: string;
  target: Target;
  notes: string[];
}): Result {
  const { comparison, target } = options;
  return {
    bench: options.bench,
    title: options.title,
    subject: {
      value: comparison.subjectRate,
      unit: options.unit?.subject ?? "req/s",
      label: options.subjectLabel ?? "Tessera",
      detail: comparison.subjectDetail,
    },
    baseline: {
      value: comparison.baselineRate,
      unit: options.unit?.baseline ?? "req/s",
      label: options.baselineLabel,
      detail: comparison.baselineDetail,
    },
    ratio: comparison.ratio,
    target,
    pass: judge(target, comparison.subjectRate, comparison.ratio),
    notes: options.notes,
  };
}
