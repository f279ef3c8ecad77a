import helmet from "@fastify/helmet";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyInstance } from "fastify";
import { jsonSchemaTransform } from "fastify-type-provider-zod";
import { addStaticHeaders } from "./request-lifecycle.ts";

/**
 * The OpenAPI document (generated from the same zod schemas the routes validate with) at `/docs/json`,
 * its UI at `/docs`, and security headers on every response. Registered before the routes: the
 * document collects each route as it is added. The UI's pages are HTML: they get helmet's headers for
 * documents (see securityHeadersPlugin for the API's).
 */
export function openApiPlugin(options: { version: string; tls: boolean }) {
  return async (app: FastifyInstance) => {
    const htmlHeaders = await htmlSecurityHeaders(options);
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
    // An encapsulated scope, so its hook runs for the UI's pages and assets only, not for API routes.
    await app.register(async (docs) => {
      docs.addHook("onRequest", (_request, reply, done) => {
        reply.headers(htmlHeaders);
        done();
      });
      await docs.register(swaggerUi, {
        routePrefix: "/docs",
        staticCSP: true,
        // Embedded mode serves plain HTTP on loopback; upgrading the UI's asset requests to https breaks it.
        transformStaticCSP: (header) => header.replace(/\s*upgrade-insecure-requests;?/, ""),
      });
    });
  };
}

/**
 * Security headers. API responses are JSON read by programs, so they carry the set OWASP's REST Security
 * Cheat Sheet names for APIs: a content security policy that forbids everything (`frame-ancestors 'none'`
 * included), X-Frame-Options DENY, nosniff, no-store caching (set with the app's defaults), HSTS over TLS
 * (where it means something), plus a same-origin resource policy so no other site can embed a response.
 * helmet's other headers (DNS prefetch, download options, cross-domain policies, origin-agent cluster,
 * XSS auditor, opener policy, referrer policy) only mean something for HTML documents a browser renders;
 * every API response paid for them (~2.5 µs of a ~40 µs validation). The docs UI is HTML, so its pages get
 * helmet's full set (their own, looser content security policy for the UI's assets stays theirs).
 */
export function securityHeadersPlugin(options: { tls: boolean }) {
  return async (app: FastifyInstance) => {
    addStaticHeaders(app, apiSecurityHeaders(options));
  };
}

export function apiSecurityHeaders(options: { tls: boolean }): Record<string, string> {
  return {
    "content-security-policy": "default-src 'none';frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "same-origin",
    ...(options.tls ? { "strict-transport-security": "max-age=31536000; includeSubDomains" } : {}),
  };
}

/**
 * helmet's headers for HTML pages, computed once: @fastify/helmet would rebuild its whole middleware
 * (parsing the CSP directives) on every request. helmet runs here on a throwaway instance and what it
 * sets is kept, without its content security policy (the docs UI sends its own).
 */
async function htmlSecurityHeaders(options: { tls: boolean }): Promise<Record<string, string>> {
  const probe = Fastify({ logger: false });
  try {
    await probe.register(helmet, {
      contentSecurityPolicy: false,
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
    if (response.statusCode !== 200 || !headers["x-frame-options"]) {
      throw new Error("helmet set no security headers");
    }
    return headers;
  } finally {
    await probe.close();
  }
}
