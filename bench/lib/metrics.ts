/**
 * Reads a child server's `GET /metrics` (Prometheus text format): how a benchmark watches an instance it
 * runs as its own process (replica size, projection lag, events it appended).
 */

export type Scrape = {
  /** The value of a sample, by name and (optionally) its labels exactly as printed, e.g. `{type="X"}`. */
  value(name: string, labels?: string): number | undefined;
};

export async function scrapeMetrics(baseUrl: string): Promise<Scrape> {
  const response = await fetch(`${baseUrl}/metrics`);
  const text = await response.text();
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}: ${text.slice(0, 200)}`);
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.length === 0 || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    if (space <= 0) continue;
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return { value: (name, labels = "") => samples.get(name + labels) };
}

/** The id of a local process by its command name (e.g. `nats-server`), from /proc; undefined if none. */
export async function findProcess(comm: string): Promise<number | undefined> {
  const { readdir, readFile } = await import("node:fs/promises");
  const entries = await readdir("/proc").catch(() => [] as string[]);
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const name = await readFile(`/proc/${entry}/comm`, "utf8").catch(() => "");
    if (name.trim() === comm) return Number(entry);
  }
  return undefined;
}
