import helmet from "@fastify/helmet";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import { jsonSchemaTransform } from "fastify-type-provider-zod";

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
 */
export function securityHeadersPlugin(options: { tls: boolean }) {
  return async (app: FastifyInstance) => {
    await app.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
      },
      strictTransportSecurity: options.tls ? { maxAge: 31_536_000, includeSubDomains: true } : false,
      crossOriginResourcePolicy: { policy: "same-origin" },
    });
  };
}
