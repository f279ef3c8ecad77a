import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { COMMAND_NODE_FLAGS, missingNodeFlags, runWithNodeFlags } from "../src/cli-node-flags.ts";

const dir = mkdtempSync(join(tmpdir(), "tessera-node-flags-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("missingNodeFlags", () => {
  it("gives replay a larger young generation", () => {
    expect(missingNodeFlags(["replay", "sessions"], [], "")).toEqual(["--max-semi-space-size=64"]);
    expect(COMMAND_NODE_FLAGS.replay).toEqual(["--max-semi-space-size=64"]);
  });

  it("adds nothing for other commands", () => {
    expect(missingNodeFlags(["serve"], [], "")).toEqual([]);
    expect(missingNodeFlags([], [], "")).toEqual([]);
  });

  it("leaves an option the process already has as it is", () => {
    expect(missingNodeFlags(["replay"], ["--max-semi-space-size=64"], "")).toEqual([]);
    expect(missingNodeFlags(["replay"], ["--max-semi-space-size=16"], "")).toEqual([]);
    expect(missingNodeFlags(["replay"], [], "--enable-source-maps --max_semi_space_size=8")).toEqual([]);
    expect(missingNodeFlags(["replay"], ["--max-old-space-size=64"], "--enable-source-maps")).toEqual([
      "--max-semi-space-size=64",
    ]);
  });
});

describe("runWithNodeFlags", () => {
  // The child records how it was started, then exits as told.
  const script = join(dir, "child.mjs");
  writeFileSync(
    script,
    `import { writeFileSync } from "node:fs";
const [out, how] = process.argv.slice(2);
writeFileSync(out, JSON.stringify({ execArgv: process.execArgv, args: process.argv.slice(2) }));
if (how === "signal") process.kill(process.pid, "SIGTERM");
else process.exitCode = Number(how);
`,
  );

  it("runs the entry in a child with the flags and returns its exit code", async () => {
    const out = join(dir, "exit.json");
    const code = await runWithNodeFlags(["--max-semi-space-size=64"], script, [out, "3"]);
    expect(code).toBe(3);
    const seen = JSON.parse(readFileSync(out, "utf8")) as { execArgv: string[]; args: string[] };
    expect(seen.execArgv[0]).toBe("--max-semi-space-size=64");
    // This process's own Node options follow (the CLI's `--import tsx` and the like).
    expect(seen.execArgv.slice(1)).toEqual(process.execArgv);
    expect(seen.args).toEqual([out, "3"]);
  });

  it("reports a child ended by a signal as 128 + its number", async () => {
    const code = await runWithNodeFlags([], script, [join(dir, "signal.json"), "signal"]);
    expect(code).toBe(128 + 15);
  });
});

it("tessera replay runs in a child process and keeps its exit codes", () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, ["bin/tessera.mjs", ...args], {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "" },
      timeout: 20_000,
    });
  const help = run(["replay", "--help"]);
  expect(help.status).toBe(0);
  expect(help.stdout).toContain("Usage: tessera replay");
  const embedded = run(["replay", "sessions"]);
  expect(embedded.status).toBe(78);
  expect(embedded.stderr).toContain("NATS_URL and DATABASE_URL");
  const unknown = run(["replay", "nonsense"]);
  expect(unknown.status).toBe(2);
}, 60_000);
