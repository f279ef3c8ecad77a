import fc from "fast-check";
import type { FastifyRouteSchemaDef } from "fastify/types/schema.js";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { Histogram, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { compiledSerializer } from "../../src/adapters/http/compiled-serializer.ts";
import { quickValidator } from "../../src/adapters/http/quick-validator.ts";
import { fixedWindowLimiter } from "../../src/adapters/http/rate-limit.ts";
import {
  createSessionBody,
  validateAnswer,
  validateBody,
  viewFromState,
} from "../../src/adapters/http/schemas.ts";
import { createLatencyHistogram } from "../../src/adapters/metrics/latency-histogram.ts";
import type { ExistingSession } from "../../src/domain/session-state.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, startEmbedded } from "../support/tessera.ts";

/**
 * The shortcuts on the validation/create hot path (docs/performance.md) must answer exactly what the
 * general machinery they bypass would: zod for request bodies and responses, prom-client for the latency
 * histogram, @fastify/rate-limit's fixed windows, a freshly built session view, the full token pattern.
 */

const route = <S>(schema: S): FastifyRouteSchemaDef<S> => ({ schema, method: "POST", url: "/test" });

const HOUR = 3_600_000;
const T0 = Date.parse("2026-03-01T12:00:00.000Z");

const stateArb: fc.Arbitrary<ExistingSession> = fc
  .record({
    status: fc.constantFrom("active", "expired", "invalidated", "recycled"),
    userId: fc.string({ minLength: 1, maxLength: 12 }),
    kind: fc.constantFrom("web", "api", "mcp"),
    roles: fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }),
    expiresIn: fc.integer({ min: 1, max: 10 * HOUR }),
    idleTimeoutSeconds: fc.constantFrom(0, 60, 3600),
    client: fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
    userAgent: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    metadata: fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  })
  .map(
    (r) =>
      ({
        status: r.status,
        sessionId: "0199a1b2-0000-7000-8000-000000000001",
        userId: r.userId,
        username: r.userId,
        kind: r.kind,
        roles: r.roles,
        groups: [],
        scope: [],
        tokenHash: "h",
        refreshGeneration: 0,
        supersededRefreshHashes: [],
        createdAt: T0,
        expiresAt: T0 + r.expiresIn,
        maxExpiresAt: T0 + 20 * HOUR,
        idleTimeoutSeconds: r.idleTimeoutSeconds,
        lastActivityAt: T0,
        client: r.client,
        ipAddress: "127.0.0.1",
        userAgent: r.userAgent,
        binding: { mode: "off" },
        metadata: r.metadata,
        ...(r.status === "active" ? {} : { endedAt: T0 + 1000, endReason: "revoked" }),
      }) as unknown as ExistingSession,
  );

describe("quickValidator", () => {
  const quick = quickValidator(route(validateBody));
  const zod = validatorCompiler(route(validateBody));
  const field = fc.oneof(
    fc.string({ maxLength: 600 }),
    fc.string({ minLength: 500, maxLength: 530 }),
    fc.integer(),
    fc.constant(null),
    fc.boolean(),
    fc.array(fc.string(), { maxLength: 2 }),
  );
  const body = fc.oneof(
    fc.record(
      {
        token: field,
        jwt: field,
        client_ip: fc.oneof(fc.string({ maxLength: 70 }), field),
        user_agent: field,
        extra: field,
      },
      { requiredKeys: [] },
    ),
    fc.constant(null),
    fc.constant(undefined),
    fc.jsonValue({ maxDepth: 2 }),
  );

  it("accepts and refuses exactly what zod does, with the same value and errors", () => {
    fc.assert(
      fc.property(body, (data) => {
        const fast = quick(data) as { value?: unknown; error?: Error };
        const slow = zod(data) as { value?: unknown; error?: Error };
        expect(fast.error?.message).toEqual(slow.error?.message);
        expect(fast.value).toEqual(slow.value);
      }),
      { numRuns: 2000 },
    );
  });

  it("accepts and refuses create bodies exactly as zod does (arrays, enums, integers, metadata)", () => {
    const quickCreate = quickValidator(route(createSessionBody));
    const zodCreate = validatorCompiler(route(createSessionBody));
    const name = fc.oneof(
      fc.string({ maxLength: 8 }),
      fc.string({ minLength: 125, maxLength: 132 }),
      fc.string({ minLength: 250, maxLength: 260 }),
    );
    const names = fc.oneof(
      fc.array(name, { maxLength: 4 }),
      fc.array(fc.constant("r"), { minLength: 62, maxLength: 66 }),
      fc.array(fc.oneof(name, fc.integer(), fc.constant(null)), { maxLength: 3 }),
    );
    const integer = fc.oneof(
      fc.integer({ min: -3, max: 3 }),
      fc.integer({ min: 31_535_998, max: 31_536_002 }),
      fc.double(),
      fc.constantFrom(-0, 2 ** 53, Number.POSITIVE_INFINITY, Number.NaN, "60"),
    );
    const metadata = fc.oneof(
      fc.dictionary(
        fc.oneof(fc.string({ maxLength: 10 }), fc.string({ minLength: 126, maxLength: 130 })),
        fc.jsonValue({ maxDepth: 2 }),
        { maxKeys: 3 },
      ),
      fc.record({ big: fc.string({ minLength: 8_150, maxLength: 8_250 }) }),
      fc.array(fc.string(), { maxLength: 2 }),
      fc.constant(null),
      fc.string(),
    );
    const validName = fc.string({ minLength: 1, maxLength: 128 });
    const validBody = fc.record(
      {
        user_id: validName,
        username: validName,
        roles: fc.array(validName, { maxLength: 64 }),
        groups: fc.array(validName, { maxLength: 3 }),
        kind: fc.constantFrom("web", "api", "mcp"),
        ttl_seconds: fc.integer({ min: 1, max: 31_536_000 }),
        idle_timeout_seconds: fc.integer({ min: 0, max: 31_536_000 }),
        metadata: fc.dictionary(fc.string({ maxLength: 128 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
        client: validName,
      },
      { requiredKeys: [] },
    );
    const createBody = fc.oneof(
      validBody,
      fc.record(
        {
          user_id: fc.oneof(name, field),
          username: name,
          roles: names,
          groups: names,
          kind: fc.oneof(fc.constantFrom("web", "api", "mcp", "API", ""), field),
          ttl_seconds: integer,
          idle_timeout_seconds: integer,
          metadata,
          client: fc.oneof(name, field),
          extra: field,
        },
        { requiredKeys: [] },
      ),
      fc.constant(null),
      fc.constant(undefined),
      fc.jsonValue({ maxDepth: 2 }),
    );
    let quickAccepted = 0;
    fc.assert(
      fc.property(createBody, (data) => {
        const fast = quickCreate(data) as { value?: unknown; error?: Error };
        const slow = zodCreate(data) as { value?: unknown; error?: Error };
        expect(fast.error?.message).toEqual(slow.error?.message);
        expect(fast.value).toEqual(slow.value);
        if (fast.value === data && data !== undefined && data !== null && slow.value !== data)
          quickAccepted++;
      }),
      { numRuns: 3000 },
    );
    // The fast path must actually be taken for valid bodies, not only fall back to zod.
    expect(quickAccepted).toBeGreaterThan(50);
    const benchBody = { user_id: "bench-user-1", roles: ["user"], metadata: { source: "bench" } };
    expect(quickCreate(benchBody)).toEqual({ value: benchBody });
    expect((quickCreate(benchBody) as { value: unknown }).value).toBe(benchBody);
  });

  it("keeps zod for schemas it does not know", () => {
    const schema = z.strictObject({ id: z.uuid() });
    expect(quickValidator(route(schema))({ id: "nope" })).toEqual(
      validatorCompiler(route(schema))({ id: "nope" }),
    );
  });
});

describe("compiledSerializer", () => {
  const fast = compiledSerializer(route(validateAnswer));
  const zod = serializerCompiler(route(validateAnswer));

  it("writes what the zod serializer writes for every session view", () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: -HOUR, max: 12 * HOUR }), (state, offset) => {
        const answer = {
          valid: true as const,
          session: viewFromState(state, T0 + offset),
          user: { id: state.userId, username: state.username, roles: state.roles, groups: state.groups },
        };
        expect(JSON.parse(fast(answer))).toEqual(JSON.parse(zod(answer)));
      }),
      { numRuns: 500 },
    );
  });

  it("writes only the schema's properties and refuses a response missing one", () => {
    const schema = z.object({ a: z.string(), b: z.number().nullable() });
    const serialize = compiledSerializer(route(schema));
    expect(serialize({ a: "x", b: null, secret: "no" })).toBe('{"a":"x","b":null}');
    expect(() => serialize({ b: 1 })).toThrow();
  });
});

describe("viewFromState", () => {
  it("answers, from its cache, the view it would build at that instant", () => {
    fc.assert(
      fc.property(
        stateArb,
        fc.array(fc.integer({ min: -HOUR, max: 12 * HOUR }), { minLength: 1, maxLength: 8 }),
        (state, offsets) => {
          for (const offset of offsets) {
            const cached = viewFromState(state, T0 + offset);
            // A structurally equal copy is not in the cache: built afresh.
            const fresh = viewFromState({ ...state }, T0 + offset);
            expect(cached).toEqual(fresh);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("reports an idle-overdue session, then an absolutely-overdue one, as time passes", () => {
    const state = {
      ...fc.sample(stateArb, 1)[0],
      status: "active",
      expiresAt: T0 + 2 * HOUR,
      idleTimeoutSeconds: 3600,
      lastActivityAt: T0,
    } as ExistingSession;
    expect(viewFromState(state, T0 + 1000)).toMatchObject({ status: "active", end_reason: null });
    expect(viewFromState(state, T0 + HOUR)).toMatchObject({ status: "expired", end_reason: "expired_idle" });
    expect(viewFromState(state, T0 + 2 * HOUR)).toMatchObject({ end_reason: "expired_absolute" });
    expect(viewFromState(state, T0 + 1000)).toMatchObject({ status: "active", end_reason: null });
  });
});

describe("fixedWindowLimiter", () => {
  it("allows max requests per key per window, then answers the seconds left", () => {
    let now = 1_000_000;
    const check = fixedWindowLimiter(3, 60_000, () => now);
    expect([check("a"), check("a"), check("a")]).toEqual([undefined, undefined, undefined]);
    now += 10_000;
    expect(check("a")).toBe(50);
    expect(check("b")).toBeUndefined();
    now += 50_000;
    expect(check("a")).toBeUndefined();
  });

  it("forgets the oldest window once 5,000 keys are tracked", () => {
    const now = 0;
    const check = fixedWindowLimiter(1, 60_000, () => now);
    check("first");
    expect(check("first")).toBe(60);
    for (let i = 0; i < 5_000; i++) check(`k${i}`);
    expect(check("first")).toBeUndefined();
  });
});

describe("latency histogram", () => {
  it("exports what prom-client's Histogram exports for the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const labelNames = ["method", "route", "status"] as const;
    const ours = new Registry();
    const theirs = new Registry();
    const fast = createLatencyHistogram({ name: "h", help: "latency", labelNames, buckets, registry: ours });
    const reference = new Histogram({ name: "h", help: "latency", labelNames, buckets, registers: [theirs] });
    const labelSets = [
      { method: "POST", route: "/v1/sessions/validate", status: "2xx" },
      { method: "GET", route: 'we"ird\\route', status: "4xx" },
    ];
    const cells = labelSets.map((labels) => fast.cell(labels));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1 }),
        fc.double({ min: 0, max: 3, noNaN: true }),
        (which, value) => {
          cells[which]?.observe(value);
          reference.observe(labelSets[which] as (typeof labelSets)[number], value);
        },
      ),
      { numRuns: 300 },
    );
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());

    // After a reset only what is observed again is listed.
    ours.resetMetrics();
    theirs.resetMetrics();
    cells[1]?.observe(0.5);
    reference.observe(labelSets[1] as (typeof labelSets)[number], 0.5);
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});

describe("over HTTP", () => {
  let tessera: Tessera;
  beforeAll(async () => {
    tessera = await startEmbedded();
  });
  afterAll(async () => {
    await tessera?.close();
  });

  it("sends the security headers on every answer, and a route's own cache-control wins", async () => {
    const created = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: "headers" },
    });
    const answers = [
      created,
      await tessera.app.inject({
        method: "POST",
        url: "/v1/sessions/validate",
        payload: { token: created.json().token },
      }),
      await tessera.app.inject({ method: "POST", url: "/v1/sessions/validate", payload: { token: "x" } }),
      await tessera.app.inject({ method: "GET", url: "/nowhere" }),
      await tessera.app.inject({
        method: "POST",
        url: "/v1/sessions/validate",
        headers: { "content-type": "application/json" },
        payload: "{",
      }),
    ];
    for (const answer of answers) {
      expect(answer.headers["content-security-policy"]).toBe("default-src 'none';frame-ancestors 'none'");
      expect(answer.headers["x-content-type-options"]).toBe("nosniff");
      expect(answer.headers["x-frame-options"]).toBe("DENY");
      expect(answer.headers["cross-origin-resource-policy"]).toBe("same-origin");
      expect(answer.headers["cache-control"]).toBe("no-store");
      // Headers that only mean something for HTML documents stay off JSON answers.
      expect(answer.headers["referrer-policy"]).toBeUndefined();
      expect(answer.headers["x-dns-prefetch-control"]).toBeUndefined();
    }
    expect(answers.map((a) => a.statusCode)).toEqual([201, 200, 401, 404, 400]);
    const jwks = await tessera.app.inject({ method: "GET", url: "/.well-known/jwks.json" });
    expect(jwks.headers["cache-control"]).toContain("max-age");
  });

  it("tells malformed tokens from unknown ones on the memory path", async () => {
    const created = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: "shapes" },
    });
    const token: string = created.json().token;
    const id = token.slice(4, 40);
    const secret = token.slice(41);
    const outcomes = [
      token,
      `tss_${id}_${"A".repeat(43)}`,
      `tss_${id}_${secret.slice(0, 42)}+`,
      `tss_${id.toUpperCase()}_${secret}`,
      `tsr_${id}_${secret}`,
      `tss_${id}-${secret}`,
      `${token}x`,
    ].map((candidate) => tessera.validator.validateFromMemory(candidate));
    expect(outcomes.map((o) => (o === undefined ? "miss" : o.valid ? "valid" : o.reason))).toEqual([
      "valid",
      "not_found",
      "malformed",
      "malformed",
      "malformed",
      "malformed",
      "malformed",
    ]);
  });
});
