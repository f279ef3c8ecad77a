/**
 * What a benchmark returns and how it is printed. Every figure carries its same-run baseline where one
 * exists, because on a shared 2-core machine only ratios are comparable between runs.
 */

export type Target =
  | { kind: "min-ratio"; value: number }
  | { kind: "min"; value: number; unit: string }
  | { kind: "max"; value: number; unit: string }
  | { kind: "none" };

export type Figure = { value: number; unit: string; label: string; detail?: string | undefined };

export type Result = {
  /** Benchmark name (what `npm run bench -- <name>` selects). */
  bench: string;
  /** What was measured, in words. */
  title: string;
  subject: Figure;
  baseline?: Figure | undefined;
  /** subject / baseline, for throughputs (higher is better). */
  ratio?: number | undefined;
  target: Target;
  /** Whether the target was met; undefined when there is no target. */
  pass: boolean | undefined;
  notes: string[];
};

export function judge(target: Target, subjectValue: number, ratio: number | undefined): boolean | undefined {
  switch (target.kind) {
    case "min-ratio":
      return ratio !== undefined && ratio >= target.value;
    case "min":
      return subjectValue >= target.value;
    case "max":
      return subjectValue <= target.value;
    case "none":
      return undefined;
    default: {
      const unreachable: never = target;
      return unreachable;
    }
  }
}

export function describeTarget(target: Target): string {
  switch (target.kind) {
    case "min-ratio":
      return `ratio ≥ ${target.value}`;
    case "min":
      return `≥ ${formatNumber(target.value)} ${target.unit}`;
    case "max":
      return `≤ ${formatNumber(target.value)} ${target.unit}`;
    case "none":
      return "—";
    default: {
      const unreachable: never = target;
      return unreachable;
    }
  }
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 100) return Math.round(value).toLocaleString("en-US");
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

const figure = (f: Figure) => `${formatNumber(f.value)} ${f.unit}`;

function verdict(pass: boolean | undefined): string {
  if (pass === undefined) return "info";
  return pass ? "pass" : "MISS";
}

/** A Markdown table: pasted as is into docs/performance.md. */
export function markdownTable(results: readonly Result[]): string {
  const rows = [
    "| benchmark | measured | Tessera | baseline (same run) | ratio | target | result |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const baseline = r.baseline ? `${figure(r.baseline)} (${r.baseline.label})` : "—";
    const ratio = r.ratio === undefined ? "—" : r.ratio.toFixed(2);
    rows.push(
      `| ${r.bench} | ${r.title} | ${figure(r.subject)} | ${baseline} | ${ratio} | ${describeTarget(r.target)} | ${verdict(r.pass)} |`,
    );
  }
  return rows.join("\n");
}

/** Details that do not fit the table (latency percentiles, lease holders, profiles…). */
export function notesSection(results: readonly Result[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const details = [r.subject.detail, r.baseline?.detail].filter((d): d is string => Boolean(d));
    if (details.length === 0 && r.notes.length === 0) continue;
    lines.push(`- **${r.bench}** — ${r.title}`);
    if (r.subject.detail) lines.push(`  - ${r.subject.label}: ${r.subject.detail}`);
    if (r.baseline?.detail) lines.push(`  - baseline (${r.baseline.label}): ${r.baseline.detail}`);
    for (const note of r.notes) lines.push(`  - ${note}`);
  }
  return lines.join("\n");
}
