import { spawnSync } from "node:child_process";
import { expect, it } from "vitest";

const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ["bin/tessera.mjs", ...args], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", ...env },
    timeout: 15_000,
  });

it("the tessera binary prints its commands", () => {
  const result = run(["help"]);
  expect(result.status).toBe(0);
  expect(result.stdout).toContain("serve");
});

it("refuses to start on a bad setting and names the variable", () => {
  const result = run(["serve"], { PORT: "not-a-port" });
  expect(result.status).toBe(78);
  expect(result.stderr).toContain("PORT");
});

it("an unknown command is a usage error", () => {
  const result = run(["frobnicate"]);
  expect(result.status).toBe(2);
  expect(result.stderr).toContain("Unknown command");
});
