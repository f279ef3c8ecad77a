import {
  type Context,
  context,
  isSpanContextValid,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

/**
 * Trace plumbing through the OpenTelemetry API (a no-op until the SDK is started). Context travels
 * explicitly as a W3C `traceparent` string — in the command context and in the NATS headers of every event —
 * rather than through async-local state, so a trace survives the hop through the log to the projections.
 */
export const tracer = trace.getTracer("tessera");

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function contextFromTraceparent(traceparent: string | undefined): Context {
  const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  if (!match) return ROOT_CONTEXT;
  const spanContext = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16),
    isRemote: true,
  };
  if (!isSpanContextValid(spanContext)) return ROOT_CONTEXT;
  return trace.setSpanContext(context.active(), spanContext);
}

export function linkFromTraceparent(traceparent: string | undefined): Link | undefined {
  const spanContext = trace.getSpanContext(contextFromTraceparent(traceparent));
  return spanContext ? { context: spanContext } : undefined;
}

/** The span's own traceparent; when tracing is off (no SDK), the incoming one is passed on unchanged. */
export function traceparentOf(span: Span, fallback: string | undefined): string | undefined {
  const { traceId, spanId, traceFlags } = span.spanContext();
  if (!span.isRecording() || !isSpanContextValid(span.spanContext())) return fallback;
  return `00-${traceId}-${spanId}-${traceFlags.toString(16).padStart(2, "0")}`;
}

/** Runs `work` in a child span of `traceparent`, recording failures; `work` gets the span's traceparent. */
export async function inSpan<T>(
  name: string,
  traceparent: string | undefined,
  attributes: Record<string, string | number | boolean>,
  work: (childTraceparent: string | undefined, span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  const span = tracer.startSpan(name, { kind, attributes }, contextFromTraceparent(traceparent));
  try {
    return await work(traceparentOf(span, traceparent), span);
  } catch (error) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw error;
  } finally {
    span.end();
  }
}

export { SpanKind };
