import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";

export type ReadinessCheck = { ok: boolean; detail?: string | undefined };
export type HealthDeps = {
  /** Each dependency's state: NATS, Postgres, projection lag. */
  readiness: () => Promise<Record<string, ReadinessCheck>>;
  /**
   * The checks whose failure makes the instance not ready (503). A failing check not named here makes it
   * `degraded` (200): it still serves what it is for (TESSERA_READY_REQUIRES, docs/architecture.md).
   */
  readyRequires: ReadonlySet<string>;
};

const checkSchema = z.object({ ok: z.boolean(), required: z.boolean(), detail: z.string().optional() });
const readySchema = z.object({
  status: z.enum(["ready", "degraded", "not_ready"]),
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
        summary:
          "Readiness: 503 when a required check fails (NATS by default), 200 `degraded` when another does",
        response: { 200: readySchema, 503: readySchema },
      },
    },
    async (_request, reply) => {
      const checks: Record<string, z.infer<typeof checkSchema>> = {};
      let status: "ready" | "degraded" | "not_ready" = "ready";
      for (const [name, check] of Object.entries(await deps.readiness())) {
        const required = deps.readyRequires.has(name);
        checks[name] = { ok: check.ok, required, detail: check.detail };
        if (!check.ok) status = required ? "not_ready" : status === "not_ready" ? status : "degraded";
      }
      return reply.code(status === "not_ready" ? 503 : 200).send({ status, checks });
    },
  );
}
