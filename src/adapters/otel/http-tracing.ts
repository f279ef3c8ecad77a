import type { Span } from "@opentelemetry/api";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { contextFromTraceparent, SpanKind, traceparentOf, tracer } from "../../app/tracing.ts";

const spans = new WeakMap<FastifyRequest, Span>();

function incomingTraceparent(request: FastifyRequest): string | undefined {
  const header = request.headers.traceparent;
  return typeof header === "string" ? header : undefined;
}

/**
 * One server span per request, child of the caller's `traceparent`. Attributes are the method, the route
 * pattern and the status — never the URL's query, headers or body, which may hold tokens.
 */
export function httpTracingPlugin(app: FastifyInstance) {
  app.addHook("onRequest", async (request) => {
    const route = request.routeOptions.url ?? "unmatched";
    const span = tracer.startSpan(
      `${request.method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": request.method, "http.route": route } },
      contextFromTraceparent(incomingTraceparent(request)),
    );
    spans.set(request, span);
  });
  app.addHook("onResponse", async (request, reply) => {
    const span = spans.get(request);
    if (!span) return;
    span.setAttribute("http.response.status_code", reply.statusCode);
    span.end();
  });
}

/** The traceparent commands of this request should carry: the request span's, else the caller's. */
export function requestTraceparent(request: FastifyRequest): string | undefined {
  const incoming = incomingTraceparent(request);
  const span = spans.get(request);
  return span ? traceparentOf(span, incoming) : incoming;
}
