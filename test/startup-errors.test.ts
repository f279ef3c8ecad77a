import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";

/**
 * A start-up that cannot succeed (unreadable TLS files, a bad or missing signing key) stops through the
 * real binary with exit 78 and a message naming the variable: no stack, and before anything was opened
 * (no embedded-mode banner, no demo users, no connection attempt).
 */

type Run = { status: number | null; stdout: string; stderr: string; ms: number };

function serve(env: Record<string, string>): Promise<Run> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["bin/tessera.mjs", "serve"], {
      env: { PATH: process.env.PATH ?? "", PORT: "0", ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    // A start that is not refused would serve forever: stop it, and let the assertions say why.
    const timer = setTimeout(() => child.kill("SIGTERM"), 20_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** Refused as a configuration error: exit 78, every named variable in the message, no stack, nothing started. */
function expectRefused(run: Run, variables: string[]) {
  expect(run.status, run.stderr).toBe(78);
  expect(run.stderr).toContain("Invalid configuration");
  for (const variable of variables) expect(run.stderr).toContain(variable);
  expect(run.stderr).not.toMatch(/^\s+at /m);
  // pino writes to stdout: any line there means the start got as far as opening something.
  expect(run.stdout).toBe("");
  // The old path needed PGlite and the demo users first (4–7 s); now it is the binary's own start-up.
  expect(run.ms).toBeLessThan(10_000);
}

let dir: string;
let certFile: string;
let keyFile: string;
let otherKeyFile: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tessera-startup-"));
  certFile = join(dir, "cert.pem");
  keyFile = join(dir, "key.pem");
  otherKeyFile = join(dir, "other-key.pem");
  const selfSigned = (key: string, cert: string) =>
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
        ...["-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
      ],
      { stdio: "ignore" },
    );
  selfSigned(keyFile, certFile);
  selfSigned(otherKeyFile, join(dir, "other-cert.pem"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

it("missing TLS files are named, not an ENOENT stack", async () => {
  const run = await serve({
    TESSERA_TLS_CERT_FILE: join(dir, "missing-cert.pem"),
    TESSERA_TLS_KEY_FILE: join(dir, "missing-key.pem"),
    TESSERA_TLS_CA_FILE: dir,
  });
  expectRefused(run, ["TESSERA_TLS_CERT_FILE", "TESSERA_TLS_KEY_FILE", "TESSERA_TLS_CA_FILE"]);
  expect(run.stderr).toContain("no such file");
  expect(run.stderr).not.toContain("ENOENT");
});

it("a key that does not belong to the certificate is refused before serving", async () => {
  const run = await serve({ TESSERA_TLS_CERT_FILE: certFile, TESSERA_TLS_KEY_FILE: otherKeyFile });
  expectRefused(run, ["TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE"]);
  expect(run.stderr).toContain("does not belong");
});

it("bad signing and verify keys are refused before PGlite starts or demo users are seeded", async () => {
  const run = await serve({ TESSERA_JWT_PRIVATE_KEY: "not a key", TESSERA_JWT_VERIFY_KEYS: "nor this" });
  expectRefused(run, ["TESSERA_JWT_PRIVATE_KEY", "TESSERA_JWT_VERIFY_KEYS"]);
  expect(run.stdout).not.toContain("EMBEDDED MODE");
});

it("distributed mode without a signing key stops before connecting to NATS or Postgres", async () => {
  // Nothing listens on port 1: had the start connected first, the error would be a connection failure.
  const run = await serve({
    NATS_URL: "nats://127.0.0.1:1",
    DATABASE_URL: "postgres://postgres@127.0.0.1:1/none",
    TESSERA_TLS_CERT_FILE: certFile,
    TESSERA_TLS_KEY_FILE: keyFile,
  });
  expectRefused(run, ["TESSERA_JWT_PRIVATE_KEY"]);
  expect(run.stderr).not.toMatch(/TESSERA_TLS_/);
});

it("a good key and certificate pass the checks (the start gets as far as the infrastructure)", async () => {
  const key = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const run = await serve({
    NATS_URL: "nats://127.0.0.1:1",
    DATABASE_URL: "postgres://postgres@127.0.0.1:1/none",
    TESSERA_JWT_PRIVATE_KEY: key,
    TESSERA_TLS_CERT_FILE: certFile,
    TESSERA_TLS_KEY_FILE: keyFile,
  });
  // Past the checks, the unreachable NATS is what stops it: an ordinary failure, not a configuration one.
  expect(run.status).not.toBe(0);
  expect(run.status).not.toBe(78);
  expect(run.stderr).not.toContain("Invalid configuration");
});
