import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer, type Pair, startEmbedded, startPair } from "../support/tessera.ts";

/**
 * Idempotency-Key on POST /v1/sessions (draft-ietf-httpapi-idempotency-key-header): a retry of the same
 * request returns the original session and token on any instance; the same key with another request is
 * 422 `idempotency_key_reused` and appends nothing.
 */

type Created = { session: { id: string; expires_at: string }; token: string };

function post(
  on: Tessera,
  key: string,
  payload: Record<string, unknown>,
  headers: Record<string, string> = adminHeaders,
) {
  return on.app.inject({
    method: "POST",
    url: "/v1/sessions",
    headers: { ...headers, "idempotency-key": key },
    payload,
  });
}

async function created(
  on: Tessera,
  key: string,
  payload: Record<string, unknown>,
  headers: Record<string, string> = adminHeaders,
) {
  const response = await post(on, key, payload, headers);
  expect(response.statusCode, response.body).toBe(201);
  return { body: response.json() as Created, replayed: response.headers["idempotent-replayed"] };
}

const BASE = {
  user_id: "ida",
  username: "Ida",
  roles: ["user", "ops"],
  groups: ["eng"],
  kind: "web",
  client: "cli",
  ttl_seconds: 900,
  idle_timeout_seconds: 120,
  metadata: { device: "laptop", nested: { a: 1, b: [1, 2] } },
};

/** Each differs from BASE in one request field. */
const DIFFERENT: Array<[string, Record<string, unknown>]> = [
  ["user_id", { ...BASE, user_id: "ida-2" }],
  ["username", { ...BASE, username: "Ida B." }],
  ["roles", { ...BASE, roles: ["user"] }],
  ["roles order", { ...BASE, roles: ["ops", "user"] }],
  ["groups", { ...BASE, groups: [] }],
  ["kind", { ...BASE, kind: "api" }],
  ["client", { ...BASE, client: undefined }],
  ["ttl_seconds", { ...BASE, ttl_seconds: 901 }],
  ["idle_timeout_seconds", { ...BASE, idle_timeout_seconds: 0 }],
  ["metadata", { ...BASE, metadata: { device: "phone", nested: { a: 1, b: [1, 2] } } }],
  ["nested metadata", { ...BASE, metadata: { device: "laptop", nested: { a: 1, b: [2, 1] } } }],
];

function sharedCases(instances: () => { first: Tessera; second: Tessera; position: () => Promise<number> }) {
  it("a renew retried with the same key appends once and answers as the first did", async () => {
    const { first, second } = instances();
    const { body } = await created(first, `renew-base-${Math.random()}`, { ...BASE, user_id: "ida-renew" });
    const renew = (on: Tessera) =>
      on.app.inject({
        method: "POST",
        url: `/v1/sessions/${body.session.id}/renew`,
        headers: { ...adminHeaders, "idempotency-key": "renew-1" },
        payload: { ttl_seconds: 1800 },
      });
    const renewed = await renew(first);
    expect(renewed.statusCode, renewed.body).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const again = await renew(second);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().session.expires_at).toBe(renewed.json().session.expires_at);
    const events = async () =>
      (await first.log.readStream({ category: "session", id: body.session.id })).events.map((e) => e.type);
    expect(await events()).toEqual(["SessionCreated", "SessionRenewed"]);
  });

  it("the same key and the same request return the original session and token, once in the log", async () => {
    const { first, second, position } = instances();
    const before = await position();
    const original = await created(first, "same-1", BASE);
    // Key order in metadata is the client's serialisation, not a different request.
    const retry = await created(second, "same-1", {
      ...BASE,
      metadata: { nested: { b: [1, 2], a: 1 }, device: "laptop" },
    });
    expect(retry.body.session.id).toBe(original.body.session.id);
    expect(retry.body.token).toBe(original.body.token);
    expect(retry.body.session.expires_at).toBe(original.body.session.expires_at);
    expect(retry.replayed).toBe("true");
    expect(original.replayed).toBeUndefined();
    expect(await position()).toBe(before + 1);
  });

  for (const [field, body] of DIFFERENT) {
    it(`the same key with another ${field} is 422 idempotency_key_reused and appends nothing`, async () => {
      const { first, second, position } = instances();
      const key = `reuse-${field.replace(/ /g, "-")}`;
      await created(first, key, BASE);
      const after = await position();
      for (const on of [first, second]) {
        const response = await post(on, key, body);
        expect(response.statusCode, response.body).toBe(422);
        expect(response.headers["content-type"]).toContain("application/problem+json");
        expect(response.json()).toMatchObject({ status: 422, code: "idempotency_key_reused" });
        expect(response.body).not.toContain("tss_");
      }
      expect(await position()).toBe(after);
    });
  }

  it("a ttl the policy clamps matches the same ttl again, and a default matches its explicit value", async () => {
    const { first, second, position } = instances();
    const clamped = { user_id: "ida-clamp", ttl_seconds: 31_536_000 };
    const a = await created(first, "clamp-1", clamped);
    expect((await created(second, "clamp-1", clamped)).body.session.id).toBe(a.body.session.id);
    const before = await position();
    expect((await post(second, "clamp-1", { ...clamped, ttl_seconds: 3600 })).statusCode).toBe(422);
    expect(await position()).toBe(before);

    const implicit = await created(first, "default-1", { user_id: "ida-default" });
    const explicit = await created(second, "default-1", { user_id: "ida-default", ttl_seconds: 3600 });
    expect(explicit.body.session.id).toBe(implicit.body.session.id);
  });

  it("a retry after the session was renewed still matches the request that created it", async () => {
    const { first, second } = instances();
    const original = await created(first, "renewed-1", BASE);
    const renewed = await first.app.inject({
      method: "POST",
      url: `/v1/sessions/${original.body.session.id}/renew`,
      headers: bearer(original.body.token),
      payload: { ttl_seconds: 5000 },
    });
    expect(renewed.statusCode, renewed.body).toBe(200);
    const retry = await created(second, "renewed-1", BASE);
    expect(retry.body.session.id).toBe(original.body.session.id);
  });

  it("a user's own create: the same key from a token with other claims is a different request", async () => {
    const { first, second, position } = instances();
    const owner = await created(first, "owner-seed", { user_id: "ida-self", roles: ["user"] });
    const own = await created(first, "own-1", { kind: "api" }, bearer(owner.body.token));
    expect((await created(second, "own-1", { kind: "api" }, bearer(owner.body.token))).body.token).toBe(
      own.body.token,
    );
    // Another token of the same user holding other roles (and so another scope): same key, same body.
    const other = await created(first, "other-seed", { user_id: "ida-self", roles: ["user", "admin"] });
    const before = await position();
    const response = await post(second, "own-1", { kind: "api" }, bearer(other.body.token));
    expect(response.statusCode, response.body).toBe(422);
    expect(await position()).toBe(before);
  });
}

describe("Idempotency-Key, embedded", () => {
  let tessera: Tessera;
  beforeAll(async () => {
    tessera = await startEmbedded();
  });
  afterAll(async () => {
    await tessera?.close();
  });
  sharedCases(() => ({ first: tessera, second: tessera, position: () => tessera.log.lastPosition() }));
});

describe("Idempotency-Key, two instances on NATS and Postgres", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair("idem");
  });
  afterAll(async () => {
    await pair?.close();
  });
  sharedCases(() => ({ first: pair.a, second: pair.b, position: () => pair.a.log.lastPosition() }));
});
