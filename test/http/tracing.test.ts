import { trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, startEmbedded } from "../support/tessera.ts";

const exporter = new InMemorySpanExporter();
let tessera: Tessera;

beforeAll(async () => {
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
  tessera = await startEmbedded();
});
afterAll(async () => {
  await tessera?.close();
  trace.disable();
});

it("traces HTTP → command → the appended event → the projection, on the caller's trace", async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const response = await tessera.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: { ...adminHeaders, traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    payload: { user_id: "traced" },
  });
  expect(response.statusCode).toBe(201);
  const { events } = await tessera.log.readStream({ category: "session", id: response.json().session.id });
  await tessera.service.readYourWrites();

  const spans = exporter.getFinishedSpans();
  const server = spans.find((s) => s.name === "POST /v1/sessions");
  const command = spans.find((s) => s.name === "command session");
  expect(server?.spanContext().traceId).toBe(traceId);
  expect(command?.spanContext().traceId).toBe(traceId);
  expect(command?.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
  // The event carries the command span's context through the log.
  expect(events[0]?.traceparent).toBe(`00-${traceId}-${command?.spanContext().spanId}-01`);
  const projection = spans.find(
    (s) => s.name === "projection sessions" && s.links.some((l) => l.context.traceId === traceId),
  );
  expect(projection).toBeDefined();
  // No span attribute ever holds a token.
  const token: string = response.json().token;
  expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain(token.slice(-43));
});
