import type { Span } from "@opentelemetry/api";
import type { FastifyInstance, FastifyRequest } from "fastify";
import {
  contextFromTraceparent,
  SpanKind,
  traceparentOf,
  tracer,
  tracingEnabled,
} from "../../app/tracing.ts";
import { onEachRequest, onEachResponse } from "../http/request-lifecycle.ts";

const spans = new WeakMap<object, Span>();
/** Spans started and not ended yet: while none are, responses need no lookup. */
let open = 0;

function incomingTraceparent(request: Pick<FastifyRequest, "headers">): string | undefined {
  const header = request.headers.traceparent;
  return typeof header === "string" ? header : undefined;
}

/**
 * One server span per request, child of the caller's `traceparent`. Attributes are the method, the route
 * pattern and the status — never the URL's query, headers or body, which may hold tokens. Without an
 * OpenTelemetry SDK no span is made at all (the caller's traceparent still passes through to commands).
 */
export function httpTracingPlugin(app: FastifyInstance) {
  onEachRequest(app, (request) => {
    if (!tracingEnabled()) return;
    const route = request.routeOptions.url ?? "unmatched";
    const span = tracer.startSpan(
      `${request.method} ${route}`,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": request.method, "http.route": route } },
      contextFromTraceparent(incomingTraceparent(request)),
    );
    spans.set(request, span);
    open++;
  });
  onEachResponse(app, (request, reply) => {
    if (open === 0) return;
    const span = spans.get(request);
    if (!span) return;
    spans.delete(request);
    open--;
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
