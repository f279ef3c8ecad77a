import {
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  type Link,
  ProxyTracerProvider,
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

/** What a proxy provider delegates to while no SDK is registered (the API's no-op provider). */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Is an SDK registered (spans would be recorded)? Cheap enough for every request: a global lookup and a
 * compare. Without one, per-request tracing work (span objects, context parsing, bookkeeping) is skipped
 * entirely; the checks run each time, so an SDK started later is picked up.
 */
export function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NOOP_PROVIDER;
}

/** The span handed to work when tracing is off: records nothing, like the API's own no-op spans. */
const NON_RECORDING_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

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
  if (!tracingEnabled()) return work(traceparent, NON_RECORDING_SPAN);
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
