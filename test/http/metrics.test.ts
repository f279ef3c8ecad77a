import { afterAll, beforeAll, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, startEmbedded } from "../support/tessera.ts";

let tessera: Tessera;
beforeAll(async () => {
  tessera = await startEmbedded();
});
afterAll(async () => {
  await tessera?.close();
});

it("exposes Prometheus metrics without ever labelling a token or id", async () => {
  const created = await tessera.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: adminHeaders,
    payload: { user_id: "metrics-user" },
  });
  const { token, session } = created.json();
  await tessera.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token } });
  await tessera.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token: "tss_nope" } });
  await tessera.service.readYourWrites();

  const response = await tessera.app.inject({ method: "GET", url: "/metrics" });
  expect(response.statusCode).toBe(200);
  const text = response.body;
  expect(text).toMatch(/tessera_events_appended_total\{type="SessionCreated"\} [1-9]/);
  expect(text).toMatch(/tessera_validations_total\{outcome="valid"\} 1/);
  expect(text).toMatch(/tessera_validations_total\{outcome="malformed"\} 1/);
  expect(text).toMatch(/tessera_active_sessions [1-9]/);
  expect(text).toMatch(
    /tessera_http_request_duration_seconds_count\{method="POST",route="\/v1\/sessions\/validate",status="2xx"\} 1/,
  );
  expect(text).not.toContain(token.slice(-43));
  expect(text).not.toContain(session.id);
});
