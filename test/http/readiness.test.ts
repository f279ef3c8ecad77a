import Fastify, { type FastifyInstance } from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { afterEach, describe, expect, it } from "vitest";
import { type ReadinessCheck, registerHealthRoutes } from "../../src/adapters/http/routes/health.ts";

/**
 * GET /readyz decides between ready, degraded and not ready from the checks it is given: only a required
 * check (TESSERA_READY_REQUIRES) takes the instance out of rotation.
 */

let app: FastifyInstance | undefined;

afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function readyz(checks: Record<string, ReadinessCheck>, required: string[]) {
  app = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerHealthRoutes(app, { readiness: async () => checks, readyRequires: new Set(required) });
  const response = await app.inject({ method: "GET", url: "/readyz" });
  return { code: response.statusCode, body: response.json() };
}

const up = { ok: true, detail: "127.0.0.1:4222" };
const down = { ok: false, detail: "connection refused" };

describe("GET /readyz", () => {
  it("is ready when every check passes, and says which are required", async () => {
    const { code, body } = await readyz({ nats: up, database: { ok: true, detail: "postgres" } }, ["nats"]);
    expect(code).toBe(200);
    expect(body).toEqual({
      status: "ready",
      checks: {
        nats: { ok: true, required: true, detail: "127.0.0.1:4222" },
        database: { ok: true, required: false, detail: "postgres" },
      },
    });
  });

  it("is degraded, still 200, when only checks that are not required fail", async () => {
    const { code, body } = await readyz({ nats: up, database: down, projections: { ok: false } }, ["nats"]);
    expect(code).toBe(200);
    expect(body.status).toBe("degraded");
    expect(body.checks.database).toEqual({ ok: false, required: false, detail: "connection refused" });
  });

  it("is not ready, 503, when a required check fails, whatever else fails too", async () => {
    for (const required of [["nats"], ["nats", "database"]]) {
      const { code, body } = await readyz({ nats: down, database: down }, required);
      expect(code).toBe(503);
      expect(body.status).toBe("not_ready");
    }
    const strict = await readyz({ nats: up, database: down }, ["nats", "database"]);
    expect(strict).toMatchObject({ code: 503, body: { status: "not_ready" } });
  });
});
