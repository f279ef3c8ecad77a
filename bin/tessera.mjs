#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx so `npx tessera` works from a checkout without a build step.
import { fileURLToPath } from "node:url";
import { register } from "tsx/esm/api";

register();
const args = process.argv.slice(2);
// Some commands want Node flags that only take effect at process start (src/cli-node-flags.ts).
const { missingNodeFlags, runWithNodeFlags } = await import("../src/cli-node-flags.ts");
const flags = missingNodeFlags(args);
if (flags.length > 0) {
  process.exitCode = await runWithNodeFlags(flags, fileURLToPath(import.meta.url), args);
} else {
  const { runCli } = await import("../src/cli.ts");
  process.exitCode = await runCli(args);
}
