import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { toFailure } from "../../src/adapters/mcp/tool-results.ts";
import { DependencyUnavailableError } from "../../src/app/unavailable.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, startEmbedded } from "../support/tessera.ts";

/**
 * A dependency that cannot be reached (the read-model database restarting) is "retry shortly" at the
 * edges, not a bug: REST answers 503 `service_unavailable` with Retry-After, the token endpoint RFC 6749
 * `temporarily_unavailable`, MCP `NOT_AVAILABLE`, and none repeats the driver's message. The real outage is in test/integration/postgres-restart.test.ts.
 */

let tessera: Tessera;

beforeAll(async () => {
  tessera = await startEmbedded();
});
afterAll(async () => {
  await tessera?.close();
});

const outage = () =>
  new DependencyUnavailableError("database", new Error("connect ECONNREFUSED 10.1.2.3:5432 (secret-host)"));

describe("an unavailable dependency at the edges", () => {
  // Each test makes one dependency fail through a spy; the next starts with it working again.
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("a listing answers 503 service_unavailable problem+json with Retry-After", async () => {
    vi.spyOn(tessera.readModel, "listSessions").mockRejectedValue(outage());
    const response = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions",
      headers: adminHeaders,
    });
    expect(response.statusCode).toBe(503);
    expect(response.headers["content-type"]).toContain("application/problem+json");
    expect(response.headers["retry-after"]).toBe("1");
    expect(response.json()).toMatchObject({
      status: 503,
      code: "service_unavailable",
      detail: "The database is unavailable; retry shortly",
      instance: "/v1/sessions",
    });
    expect(response.body).not.toContain("secret-host");
  });

  it("a scrape of /metrics still answers, the active-session gauge keeping its last count", async () => {
    const down = vi.spyOn(tessera.readModel, "stats").mockRejectedValue(outage());
    const response = await tessera.app.inject({ method: "GET", url: "/metrics" });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain("tessera_validation_view_sessions");
    expect(response.body).toMatch(/^tessera_active_sessions \d+$/m);
    expect(down).toHaveBeenCalled();
  });

  it("so do statistics when the read model's checkpoint cannot be read", async () => {
    vi.spyOn(tessera.readModel, "checkpoint").mockRejectedValue(outage());
    const response = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions/stats",
      headers: adminHeaders,
    });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toMatchObject({ code: "service_unavailable" });
  });

  it("any other failure stays a 500 internal_error", async () => {
    vi.spyOn(tessera.readModel, "listSessions").mockRejectedValue(new Error("a bug"));
    const response = await tessera.app.inject({
      method: "GET",
      url: "/v1/sessions",
      headers: adminHeaders,
    });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toMatchObject({ code: "internal_error" });
    expect(response.headers["retry-after"]).toBeUndefined();
  });

  it("a password login answers RFC 6749 temporarily_unavailable with Retry-After", async () => {
    vi.spyOn(tessera.auth.directory, "verifyCredentials").mockRejectedValue(outage());
    const response = await tessera.app.inject({
      method: "POST",
      url: "/v1/auth/token",
      payload: { grant_type: "password", username: "demo", password: "demo123!" },
    });
    expect(response.statusCode).toBe(503);
    expect(response.headers["retry-after"]).toBe("1");
    expect(response.json()).toEqual({
      error: "temporarily_unavailable",
      error_description: "The database is unavailable; retry shortly",
    });
  });

  it("an MCP tool reports NOT_AVAILABLE, as an expected failure", () => {
    const { result, unexpected } = toFailure(outage(), "LIST_FAILED", "Could not list sessions");
    expect(unexpected).toBe(false);
    expect(result).toEqual({
      content: [
        {
          type: "text",
          text: JSON.stringify({
            error: "The database is unavailable; retry shortly",
            code: "NOT_AVAILABLE",
          }),
        },
      ],
      isError: true,
    });
  });
});
