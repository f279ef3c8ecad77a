import { spawn } from "node:child_process";
import { constants } from "node:os";

/**
 * Node flags some CLI commands run with. V8 sizes its heap when the process starts (a later
 * `v8.setFlagsFromString` does not resize the young generation), so bin/tessera.mjs starts such a
 * command in a child Node process with the flags when the current process lacks them.
 *
 * `replay`: a larger young generation. A rebuild reads the log as fast as Node can decode it, leaving
 * a dozen or so short-lived objects per event (the NATS client's message, the parsed JSON, the folded
 * row) while a batch or two of events stay alive until written; each scavenge copies those survivors.
 * With V8's default 16 MB semi-spaces the rebuild benchmark (14,334 events) ran 11–16 scavenges,
 * ~100–150 ms of its ~450–550 ms of Node CPU; with 64 MB it runs 2–4 (~30–50 ms), and the rebuilding
 * process uses ~17 % less CPU (docs/performance.md). The price: the young generation may grow to 192 MB
 * instead of 48 MB while it runs.
 */
export const COMMAND_NODE_FLAGS: Readonly<Record<string, readonly string[]>> = {
  replay: ["--max-semi-space-size=64"],
};

/**
 * The flags `args` (the CLI arguments) should run with and the process does not have. An option the
 * user already set, on the command line or in NODE_OPTIONS, is left as the user set it.
 */
export function missingNodeFlags(
  args: readonly string[],
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env.NODE_OPTIONS ?? "",
): string[] {
  const wanted = COMMAND_NODE_FLAGS[args[0] ?? ""] ?? [];
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].map(optionName);
  return wanted.filter((flag) => !given.includes(optionName(flag)));
}

/** `--max-semi-space-size=64` → `--max-semi-space-size` (V8 also accepts underscores). */
function optionName(flag: string): string {
  return flag.split("=")[0]?.replaceAll("_", "-") ?? flag;
}

/**
 * Runs `entry args` in a child Node process with `flags` (and this process's own Node options), sharing
 * stdio; resolves with its exit code. A SIGINT/SIGTERM/SIGHUP sent to this process is passed on (a
 * terminal's Ctrl-C reaches both anyway) and this process waits for the child to end.
 */
export function runWithNodeFlags(flags: readonly string[], entry: string, args: readonly string[]) {
  const child = spawn(process.execPath, [...flags, ...process.execArgv, entry, ...args], {
    stdio: "inherit",
  });
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of signals) process.on(signal, forward);
  return new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      for (const s of signals) process.off(s, forward);
      // A child killed by a signal exits as a shell reports it: 128 + the signal's number.
      resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
    });
  });
}
