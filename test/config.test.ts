import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration from the environment", () => {
  it("defaults to embedded mode with the design's defaults", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ mode: "embedded", host: "127.0.0.1", port: 8080, prefix: "tessera" });
    expect(config.policy).toMatchObject({
      defaultTtlSeconds: 3600,
      maxLifetimeSeconds: 2_592_000,
      idleTimeoutSeconds: 0,
      mcpIdleTimeoutSeconds: 1800,
      touchIntervalSeconds: 60,
      binding: "off",
      limitPolicy: "reject",
    });
  });

  it("runs distributed when both NATS_URL and DATABASE_URL are set", () => {
    const config = loadConfig({
      NATS_URL: "nats://127.0.0.1:4222",
      DATABASE_URL: "postgres://x@127.0.0.1/db",
    });
    expect(config.mode).toBe("distributed");
  });

  it("reads which readiness checks are required: NATS by default, a comma list, a bad name refused", () => {
    expect(loadConfig({}).readyRequires).toEqual(["nats"]);
    expect(loadConfig({ TESSERA_READY_REQUIRES: "nats, database,projection_lag" }).readyRequires).toEqual([
      "nats",
      "database",
      "projection_lag",
    ]);
    expect(loadConfig({ TESSERA_READY_REQUIRES: "" }).readyRequires).toEqual([]);
    expect(problemsOf({ TESSERA_READY_REQUIRES: "nats,postgres" }).join("\n")).toMatch(
      /TESSERA_READY_REQUIRES.*one of nats, database, projection_lag/,
    );
  });

  it("treats a blank number (`PORT=` in an env file) as unset, not as 0", () => {
    const config = loadConfig({
      PORT: "",
      TESSERA_RETENTION_SECONDS: " ",
      TESSERA_MAX_SESSIONS_PER_USER: "",
      TESSERA_SESSION_TTL_SECONDS: "",
      TESSERA_NATS_REPLICAS: "",
    });
    expect(config.port).toBe(8080);
    expect(config.natsReplicas).toBe(1);
    expect(config.policy).toMatchObject({
      retentionSeconds: 2_592_000,
      maxSessionsPerUser: 0,
      defaultTtlSeconds: 3600,
    });
  });

  it.each([
    [{ PORT: "eighty" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ TESSERA_BINDING: "mac" }, "TESSERA_BINDING"],
    [{ TESSERA_SESSION_TTL_SECONDS: "0" }, "TESSERA_SESSION_TTL_SECONDS"],
    [{ TESSERA_PREFIX: "has.dots" }, "TESSERA_PREFIX"],
    [{ TESSERA_ADMIN_KEY: "short" }, "TESSERA_ADMIN_KEY"],
    [{ NATS_URL: "nats://127.0.0.1:4222" }, "DATABASE_URL"],
    [{ TESSERA_TLS_CERT_FILE: "/tmp/cert.pem" }, "TESSERA_TLS_KEY_FILE"],
    [
      { TESSERA_SESSION_TTL_SECONDS: "100", TESSERA_MAX_LIFETIME_SECONDS: "10" },
      "TESSERA_SESSION_TTL_SECONDS",
    ],
  ])("a bad value (%o) stops start-up naming %s", (env, variable) => {
    const problems = problemsOf(env as Record<string, string>);
    expect(problems.join("\n")).toContain(variable);
  });
});
