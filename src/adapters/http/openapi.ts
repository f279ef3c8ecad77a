import helmet from "@fastify/helmet";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance } from "fastify";
import { jsonSchemaTransform } from "fastify-type-provider-zod";
import { addStaticHeaders } from "./request-lifecycle.ts";

/**
 * The OpenAPI document (generated from the same zod schemas the routes validate with) at `/docs/json`,
 * its UI at `/docs`, and security headers on every response. Registered before the routes: the
 * document collects each route as it is added.
 */
export function openApiPlugin(options: { version: string }) {
  return async (app: FastifyInstance) => {
    await app.register(swagger, {
      openapi: {
        openapi: "3.1.0",
        info: {
          title: "Tessera",
          description: "Event-sourced session service: sessions, login and tokens, validation.",
          version: options.version,
        },
        components: {
          securitySchemes: {
            bearer: { type: "http", scheme: "bearer", description: "Access JWT or tss_ session token" },
            adminKey: { type: "apiKey", in: "header", name: "x-admin-key" },
          },
        },
        security: [{ bearer: [] }, { adminKey: [] }],
      },
      transform: jsonSchemaTransform,
    });
    await app.register(swaggerUi, {
      routePrefix: "/docs",
      staticCSP: true,
      // Embedded mode serves plain HTTP on loopback; upgrading the UI's asset requests to https breaks it.
      transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ""),
    });
  };
}

/**
 * Security headers (helmet). The API serves JSON, so the content security policy forbids everything;
 * the docs UI sets its own, looser policy for its assets (staticCSP above). HSTS is sent only over TLS,
 * where it means something.
 *
 * With this configuration helmet's headers are the same on every response, but @fastify/helmet runs
 * two hooks per request that rebuild the whole middleware (parsing the CSP directives each time). So
 * helmet runs once here, on a throwaway instance, and what it sets becomes static headers of the app.
 */
export function securityHeadersPlugin(options: { tls: boolean }) {
  return async (app: FastifyInstance) => {
    addStaticHeaders(app, await helmetHeaders(options));
  };
}

async function helmetHeaders(options: { tls: boolean }): Promise<Record<string, string>> {
  const probe = Fastify({ logger: false });
  try {
    await probe.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
      },
      strictTransportSecurity: options.tls ? { maxAge: 31_536_000, includeSubDomains: true } : false,
      crossOriginResourcePolicy: { policy: "same-origin" },
    });
    let headers: Record<string, string> = {};
    // helmet writes straight onto the raw response, so what is there when the handler runs is helmet's.
    probe.get("/", (_request, reply) => {
      headers = Object.fromEntries(
        Object.entries(reply.raw.getHeaders()).map(([name, value]) => [name, String(value)]),
      );
      return reply.send("");
    });
    const response = await probe.inject({ method: "GET", url: "/" });
    if (response.statusCode !== 200 || !headers["content-security-policy"]) {
      throw new Error("helmet set no security headers");
    }
    return headers;
  } finally {
    await probe.close();
  }
}
