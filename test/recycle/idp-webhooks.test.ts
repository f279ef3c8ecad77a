import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signWebhook, webhookKey } from "../../src/app/idp-webhooks.ts";
import type { Tessera } from "../../src/main.ts";
import { createSession, eventually, type Pair, startPair } from "../support/tessera.ts";

/**
 * POST /v1/hooks/idp on two instances sharing the replay store (NATS KV): Standard Webhooks signatures,
 * the five-minute timestamp window, replayed ids, and what each event does.
 */
const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const key = webhookKey(SECRET);

let pair: Pair;
let a: Tessera;
let b: Tessera;

beforeAll(async () => {
  const env = { TESSERA_IDP_WEBHOOK_SECRET: SECRET };
  pair = await startPair("hook", { env });
  ({ a, b } = pair);
});

afterAll(async () => {
  await pair?.close();
});

type Delivery = {
  id?: string;
  timestamp?: number;
  body: string;
  signature?: string;
  headers?: Record<string, string>;
};

function deliver(on: Tessera, delivery: Delivery) {
  const id = delivery.id ?? `msg_${randomUUID()}`;
  const timestamp = delivery.timestamp ?? Math.floor(Date.now() / 1000);
  return on.app.inject({
    method: "POST",
    url: "/v1/hooks/idp",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": delivery.signature ?? signWebhook(key, id, timestamp, delivery.body),
      ...delivery.headers,
    },
    payload: delivery.body,
  });
}

const claimsChanged = (userId: string, roles: string[]) =>
  JSON.stringify({
    type: "user.claims_changed",
    timestamp: new Date().toISOString(),
    data: { user_id: userId, roles, groups: [] },
  });

async function userEvents(userId: string) {
  return (await a.log.readStream({ category: "user", id: userId })).events;
}

/** Waits until the recycle process manager has caught up with the log: no fan-out is still to append. */
async function settled(on: Tessera): Promise<number> {
  let end = 0;
  // The fan-out appends events of its own, so "caught up" is checked against the log's end each time.
  await eventually(async () => {
    end = await on.log.lastPosition();
    return (await on.store.getCheckpoint("recycle")) >= end;
  }, 10_000);
  return end;
}

describe("IdP webhook signature, timestamp and replay", () => {
  it("a correctly signed claims change is recorded and recycles the user's sessions", async () => {
    const { token } = await createSession(b, "hook-ok");
    const response = await deliver(a, { body: claimsChanged("hook-ok", ["admin"]) });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toMatchObject({ received: true, type: "user.claims_changed", changed: true });
    const [event] = await userEvents("hook-ok");
    expect(event).toMatchObject({
      type: "UserClaimsChanged",
      data: { after: { roles: ["admin"], groups: [] } },
      metadata: { source: "webhook", actor: { kind: "idp" } },
    });
    await eventually(() => {
      const outcome = b.validator.validateFromMemory(token);
      return outcome !== undefined && !outcome.valid && outcome.reason === "recycled";
    }, 5_000);
  });

  it("accepts a delivery signed with several signatures when one of them is valid (secret rotation)", async () => {
    const id = `msg_${randomUUID()}`;
    const timestamp = Math.floor(Date.now() / 1000);
    const body = claimsChanged("hook-rotate", ["viewer"]);
    const signature = `v1,${randomBytes(32).toString("base64")} ${signWebhook(key, id, timestamp, body)}`;
    const response = await deliver(a, { id, timestamp, body, signature });
    expect(response.statusCode, response.body).toBe(200);
  });

  const refused: Array<[string, () => Delivery]> = [
    [
      "a wrong signature",
      () => ({
        body: claimsChanged("hook-bad", ["admin"]),
        signature: `v1,${randomBytes(32).toString("base64")}`,
      }),
    ],
    [
      "a signature made with another secret",
      () => {
        const id = "msg_other";
        const timestamp = Math.floor(Date.now() / 1000);
        const body = claimsChanged("hook-bad", ["admin"]);
        return { id, timestamp, body, signature: signWebhook(randomBytes(24), id, timestamp, body) };
      },
    ],
    [
      "a body changed after signing",
      () => {
        const id = `msg_${randomUUID()}`;
        const timestamp = Math.floor(Date.now() / 1000);
        return {
          id,
          timestamp,
          body: claimsChanged("hook-bad", ["admin"]),
          signature: signWebhook(key, id, timestamp, claimsChanged("hook-bad", ["viewer"])),
        };
      },
    ],
    [
      "a timestamp over five minutes old",
      () => ({ body: claimsChanged("hook-bad", ["admin"]), timestamp: Math.floor(Date.now() / 1000) - 301 }),
    ],
    [
      "a timestamp over five minutes ahead",
      () => ({ body: claimsChanged("hook-bad", ["admin"]), timestamp: Math.floor(Date.now() / 1000) + 301 }),
    ],
    ["no signature header", () => ({ body: claimsChanged("hook-bad", ["admin"]), signature: "" })],
    [
      "an unknown signature version",
      () => {
        const id = `msg_${randomUUID()}`;
        const timestamp = Math.floor(Date.now() / 1000);
        const body = claimsChanged("hook-bad", ["admin"]);
        return {
          id,
          timestamp,
          body,
          signature: signWebhook(key, id, timestamp, body).replace("v1,", "v1a,"),
        };
      },
    ],
  ];

  it.each(refused)("refuses %s with 401 and records nothing", async (_name, make) => {
    const before = await settled(a);
    const response = await deliver(a, make());
    expect(response.statusCode, response.body).toBe(401);
    expect(response.headers["content-type"]).toContain("application/problem+json");
    expect(await a.log.lastPosition()).toBe(before);
    expect(await userEvents("hook-bad")).toEqual([]);
  });

  it("refuses a replayed webhook-id, on the same and on another instance", async () => {
    const id = `msg_${randomUUID()}`;
    const timestamp = Math.floor(Date.now() / 1000);
    const first = await deliver(a, { id, timestamp, body: claimsChanged("hook-replay", ["admin"]) });
    expect(first.statusCode).toBe(200);
    const position = await settled(a);
    for (const on of [a, b]) {
      // Same id, freshly and validly signed: still the same delivery.
      const again = await deliver(on, { id, body: claimsChanged("hook-replay", ["viewer"]) });
      expect(again.statusCode).toBe(401);
      expect(again.json()).toMatchObject({ reason: "replayed" });
    }
    expect(await a.log.lastPosition()).toBe(position);
    expect((await userEvents("hook-replay")).map((e) => e.type)).toEqual(["UserClaimsChanged"]);
  });

  it("answers 400 to a well-signed event holding text no event can carry, recording nothing", async () => {
    const before = await settled(a);
    for (const body of [
      claimsChanged("hook-nul", ["adm\u0000in"]),
      claimsChanged("hook-\ud800", ["admin"]),
    ]) {
      const response = await deliver(a, { body });
      expect(response.statusCode, response.body).toBe(400);
      expect(response.json()).toMatchObject({ code: "invalid_request" });
    }
    expect(await a.log.lastPosition()).toBe(before);
  });

  it("answers 400 to a well-signed event it does not know, recording nothing", async () => {
    const before = await settled(a);
    const response = await deliver(a, {
      body: JSON.stringify({ type: "user.renamed", data: { user_id: "x" } }),
    });
    expect(response.statusCode).toBe(400);
    expect(await a.log.lastPosition()).toBe(before);
  });
});

describe("IdP webhook events", () => {
  it("user.disabled ends every session of the user, refused on every instance at once", async () => {
    const sessions = await Promise.all([createSession(a, "hook-dis"), createSession(b, "hook-dis")]);
    const response = await deliver(b, {
      body: JSON.stringify({ type: "user.disabled", data: { user_id: "hook-dis" } }),
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toMatchObject({ type: "user.disabled", revoked: 2 });
    for (const { token } of sessions) {
      await eventually(() => a.validator.validateFromMemory(token)?.valid === false, 2_000);
      expect(a.validator.validateFromMemory(token)).toMatchObject({ valid: false, reason: "invalidated" });
    }
    const [revocation] = await userEvents("hook-dis");
    expect(revocation).toMatchObject({ type: "UserSessionsRevoked", data: { reason: "user_disabled" } });
  });

  it("user.sessions_revoked ends every session with reason idp_revoked", async () => {
    const session = await createSession(a, "hook-rev");
    const response = await deliver(a, {
      body: JSON.stringify({ type: "user.sessions_revoked", data: { user_id: "hook-rev" } }),
    });
    expect(response.json()).toMatchObject({ revoked: 1 });
    const { events } = await a.log.readStream({ category: "session", id: session.id });
    expect(events.at(-1)).toMatchObject({ type: "SessionInvalidated", data: { reason: "idp_revoked" } });
  });
});
