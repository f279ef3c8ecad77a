import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fastValidateCounts } from "../../src/adapters/http/routes/session-validate.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import type { Tessera } from "../../src/main.ts";
import {
  connectNats,
  createTestDatabase,
  removeNatsPrefix,
  type TestDatabase,
  uniquePrefix,
} from "../support/services.ts";
import { startDistributed } from "../support/tessera.ts";

/** Multi-user mode: no TLS, no start; with a certificate, real HTTPS (seed 000's rule). */
let nc: NatsConnection;
let database: TestDatabase;
let prefix: string;
let dir: string;
let certFile: string;
let keyFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tessera-tls-"));
  certFile = join(dir, "cert.pem");
  keyFile = join(dir, "key.pem");
  // A self-signed certificate for 127.0.0.1, made for this test run only.
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
      ...["-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=127.0.0.1"],
      ...["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
    ],
    { stdio: "ignore" },
  );
  nc = await connectNats();
  prefix = uniquePrefix("tls");
  database = await createTestDatabase();
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await nc?.close();
  await database?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("without TLS", () => {
  it("the configuration is refused, naming the variables", () => {
    expect(() => loadConfig({ TESSERA_MULTIUSER: "true" })).toThrow(ConfigError);
    expect(() => loadConfig({ TESSERA_MULTIUSER: "true", TESSERA_TLS_CERT_FILE: certFile })).toThrow(
      /TESSERA_TLS_KEY_FILE/,
    );
    expect(
      loadConfig({
        TESSERA_MULTIUSER: "true",
        TESSERA_TLS_CERT_FILE: certFile,
        TESSERA_TLS_KEY_FILE: keyFile,
      }).tls,
    ).toEqual({ certFile, keyFile, caFile: undefined });
  });

  it("`tessera serve` refuses to start in multi-user mode (exit 78) and says why", async () => {
    const child = spawn(process.execPath, ["bin/tessera.mjs", "serve"], {
      env: { PATH: process.env.PATH ?? "", TESSERA_MULTIUSER: "true", PORT: "0" },
    });
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code).toBe(78);
    expect(stderr).toContain("TESSERA_MULTIUSER=true requires TLS");
  });
});

describe("with a certificate", () => {
  let tessera: Tessera;
  let port: number;

  beforeAll(async () => {
    tessera = await startDistributed({
      prefix,
      databaseUrl: database.url,
      env: { TESSERA_MULTIUSER: "true", TESSERA_TLS_CERT_FILE: certFile, TESSERA_TLS_KEY_FILE: keyFile },
    });
    await tessera.app.listen({ host: "127.0.0.1", port: 0 });
    const address = tessera.app.server.address();
    port = typeof address === "object" && address ? address.port : 0;
    await tessera.auth.directory.create({
      username: "tls-user",
      password: "tls-password",
      roles: ["user"],
      groups: [],
    });
  });

  afterAll(async () => {
    await tessera?.close();
  });

  function https(method: string, path: string, headers: Record<string, string> = {}, body?: string) {
    return new Promise<{ status: number; headers: Record<string, unknown>; body: string; protocol: string }>(
      (resolve, reject) => {
        const req = httpsRequest(
          { host: "127.0.0.1", port, path, method, headers, ca: readFileSync(certFile) },
          (res) => {
            let text = "";
            const protocol = (res.socket as { getProtocol?: () => string | null }).getProtocol?.() ?? "";
            res.on("data", (chunk) => {
              text += chunk;
            });
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: text,
                protocol,
              }),
            );
          },
        );
        req.on("error", reject);
        req.end(body);
      },
    );
  }

  it("serves HTTPS with a verified certificate, HSTS, and the whole login flow", async () => {
    const health = await https("GET", "/healthz");
    expect(health.status).toBe(200);
    expect(health.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(health.headers["strict-transport-security"]).toContain("max-age=31536000");

    const token = await https(
      "POST",
      "/v1/auth/token",
      { "content-type": "application/x-www-form-urlencoded" },
      "grant_type=password&username=tls-user&password=tls-password",
    );
    expect(token.status, token.body).toBe(200);
    const { access_token, session_id } = JSON.parse(token.body);
    const session = await https("GET", `/v1/sessions/${session_id}`, {
      authorization: `Bearer ${access_token}`,
    });
    expect(session.status, session.body).toBe(200);
    expect(JSON.parse(session.body)).toMatchObject({ id: session_id, username: "tls-user" });
  });

  it("answers validations on the fast path over HTTPS too, with the same security headers", async () => {
    const counts = fastValidateCounts(tessera.app);
    const answeredBefore = counts?.answered ?? 0;
    const body = JSON.stringify({ token: `tss_${"0".repeat(36)}_${"x".repeat(43)}` });
    const refused = await https(
      "POST",
      "/v1/sessions/validate",
      { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) },
      body,
    );
    expect(refused.status, refused.body).toBe(401);
    expect(JSON.parse(refused.body)).toEqual({ valid: false, reason: "malformed" });
    expect(refused.headers["strict-transport-security"]).toContain("max-age=31536000");
    expect((counts?.answered ?? 0) - answeredBefore).toBe(1);
  });

  it("does not speak plain HTTP on that port", async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: "/healthz" }, (res) =>
        resolve(`status ${res.statusCode}`),
      );
      req.on("error", (error) => resolve(`error ${error.message}`));
      req.end();
    });
    expect(outcome).not.toBe("status 200");
  });
});
