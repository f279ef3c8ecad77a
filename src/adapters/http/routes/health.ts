import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";

export type ReadinessCheck = { ok: boolean; detail?: string | undefined };
export type HealthDeps = {
  /** Each dependency's state: NATS, Postgres, projection lag. */
  readiness: () => Promise<Record<string, ReadinessCheck>>;
};

const checkSchema = z.object({ ok: z.boolean(), detail: z.string().optional() });
const readySchema = z.object({
  status: z.enum(["ready", "not_ready"]),
  checks: z.record(z.string(), checkSchema),
});

export function registerHealthRoutes(fastify: FastifyInstance, deps: HealthDeps) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get(
    "/healthz",
    {
      schema: {
        summary: "Liveness: the process serves requests",
        response: { 200: z.object({ status: z.literal("ok") }) },
      },
    },
    async () => ({ status: "ok" as const }),
  );
  app.get(
    "/readyz",
    {
      schema: {
        summary: "Readiness: NATS, the database and the projections are usable",
        response: { 200: readySchema, 503: readySchema },
      },
    },
    async (_request, reply) => {
      const checks = await deps.readiness();
      const ready = Object.values(checks).every((check) => check.ok);
      return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not_ready", checks });
    },
  );
}
