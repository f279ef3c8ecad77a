import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeClock, type FakeClock } from "../../src/adapters/clock/fake-clock.ts";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, eventually, type Pair, startPair } from "../support/tessera.ts";
import {
  bearerHeaders,
  callTool,
  connectMcp,
  httpFailure,
  listen,
  structured,
  userSession,
} from "./support.ts";

/**
 * MCP idle expiry (seed 003: 30 minutes of inactivity) on two instances sharing one fake clock: activity on
 * either instance keeps the session alive, silence ends it everywhere, and the scheduler records it.
 */
let clock: FakeClock;
let pair: Pair;
let a: Tessera;
let b: Tessera;
let urlA: string;
let urlB: string;

const MINUTE = 60_000;

beforeAll(async () => {
  clock = createFakeClock(Date.now());
  pair = await startPair("mcpi", { clock });
  ({ a, b } = pair);
  urlA = await listen(a);
  urlB = await listen(b);
});

afterAll(async () => {
  await pair?.close();
});

const sessionIdOf = (token: string) => token.slice(4, 40);

/** A credential that outlives every jump of the clock below (it has no idle timeout of its own). */
const credential = (userId: string) => userSession(a, userId, { ttlSeconds: 86_400 });

describe("MCP idle expiry", () => {
  it("30 minutes without a request ends the session on every instance; the scheduler records it", async () => {
    const { token } = await credential("idle-silent");
    const mcp = await connectMcp(urlA, bearerHeaders(token));
    const mcpSession = mcp.transport.sessionId ?? "";
    const onB = await connectMcp(urlB, bearerHeaders(token), mcpSession);

    clock.advance(29 * MINUTE);
    const quiet = clock.now();
    structured(await callTool(onB, "session-stats"));
    // That request counted as activity (a coalesced touch), seen by both instances.
    await eventually(() => (a.replica.getSession(sessionIdOf(mcpSession))?.lastActivityAt ?? 0) >= quiet);

    clock.advance(30 * MINUTE);
    expect(await httpFailure(() => callTool(mcp, "session-stats"))).toBe(404);
    expect(await httpFailure(() => callTool(onB, "session-stats"))).toBe(404);
    await eventually(async () => (await a.service.get(sessionIdOf(mcpSession)))?.status === "expired", 5_000);
    const view = await b.app.inject({
      method: "GET",
      url: `/v1/sessions/${sessionIdOf(mcpSession)}`,
      headers: adminHeaders,
    });
    expect(view.json()).toMatchObject({ status: "expired", end_reason: "expired_idle", kind: "mcp" });

    // The credential is still fine: the client re-initializes.
    const again = await connectMcp(urlB, bearerHeaders(token));
    structured(await callTool(again, "session-stats"));
    await again.client.close();
  });

  it("requests keep it alive past 30 minutes in total", async () => {
    const { token } = await credential("idle-busy");
    const mcp = await connectMcp(urlA, bearerHeaders(token));
    const mcpSession = mcp.transport.sessionId ?? "";
    const onB = await connectMcp(urlB, bearerHeaders(token), mcpSession);
    for (const connection of [onB, mcp, onB]) {
      clock.advance(20 * MINUTE);
      const at = clock.now();
      structured(await callTool(connection, "session-stats"));
      await eventually(
        () =>
          (a.replica.getSession(sessionIdOf(mcpSession))?.lastActivityAt ?? 0) >= at &&
          (b.replica.getSession(sessionIdOf(mcpSession))?.lastActivityAt ?? 0) >= at,
      );
    }
    // 60 minutes after initialize, still alive.
    structured(await callTool(mcp, "session-stats"));
    clock.advance(31 * MINUTE);
    expect(await httpFailure(() => callTool(onB, "session-stats"))).toBe(404);
  });
});
