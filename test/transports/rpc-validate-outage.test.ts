import { describe, expect, it } from "vitest";
import { createSessionOperations, type RpcCaller } from "../../src/adapters/rpc/session-operations.ts";
import type { SessionService } from "../../src/app/session-service.ts";
import { DependencyUnavailableError } from "../../src/app/unavailable.ts";
import type { Validator } from "../../src/app/validator.ts";
import { sessionEntry } from "../validation-view/fixtures.ts";

/**
 * WebSocket's and gRPC's validate while NATS is away: memory judged the token valid, the session is not
 * cached here and the log cannot be read. As on REST, the answer is valid, with the view built from the
 * validation entry and marked partial — not a 503 that would fail every gateway's request.
 */

const entry = sessionEntry({ position: 7 });
const validator = { validate: async () => ({ valid: true, entry }) } as unknown as Validator;
const caller: RpcCaller = { principal: undefined, facts: {}, correlationId: "c-1", source: "ws" };

function operations(getAtLeast: SessionService["getAtLeast"]) {
  return createSessionOperations({
    service: { getAtLeast } as unknown as SessionService,
    validator,
    readModel: {} as never,
    clock: { now: () => entry.createdAt + 1_000 },
    ids: { uuidv7: () => "id" } as never,
  });
}

describe("validate over WebSocket and gRPC while NATS is away", () => {
  it("answers valid from the validation entry, marked partial", async () => {
    const ops = operations(async () => {
      throw new DependencyUnavailableError("event log", new Error("the NATS connection is down"));
    });
    const answer = await ops.validate(caller, { token: "tss_whatever" });
    expect(answer).toMatchObject({
      valid: true,
      partial_view: true,
      session: {
        id: entry.sessionId,
        user_id: entry.userId,
        status: "active",
        client: null,
        metadata: {},
        expires_at: new Date(entry.expiresAt).toISOString(),
      },
      user: { id: entry.userId, roles: entry.roles },
    });
  });

  it("still fails on anything else the log throws", async () => {
    const ops = operations(async () => {
      throw new Error("a bug");
    });
    await expect(ops.validate(caller, { token: "tss_whatever" })).rejects.toThrow("a bug");
  });
});
