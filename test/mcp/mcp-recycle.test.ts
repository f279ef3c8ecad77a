import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
 * Recycling and MCP sessions (seed 003): a claims change recycles the MCP session, the client gets 404 and
 * re-initializes; so does a caller whose credential carries other claims than the session, and a client
 * that recycles its own sessions. Two instances on the real NATS and Postgres.
 */
let pair: Pair;
let a: Tessera;
let b: Tessera;
let urlA: string;
let urlB: string;

beforeAll(async () => {
  pair = await startPair("mcpr");
  ({ a, b } = pair);
  urlA = await listen(a);
  urlB = await listen(b);
});

afterAll(async () => {
  await pair?.close();
});

const sessionIdOf = (token: string) => token.slice(4, 40);

async function statusOf(on: Tessera, sessionId: string) {
  const response = await on.app.inject({
    method: "GET",
    url: `/v1/sessions/${sessionId}`,
    headers: adminHeaders,
  });
  return response.json() as { status: string; end_reason: string | null; roles: string[] };
}

describe("recycling MCP sessions", () => {
  it("a claims change recycles the MCP session: 404, then re-initialize with the new claims", async () => {
    const before = await userSession(a, "rc-claims", { roles: ["user"] });
    const mcp = await connectMcp(urlA, bearerHeaders(before.token));
    const mcpSession = mcp.transport.sessionId ?? "";
    structured(await callTool(mcp, "session-stats"));

    const changed = await b.app.inject({
      method: "PUT",
      url: "/v1/users/rc-claims/claims",
      headers: adminHeaders,
      payload: { roles: ["user", "auditor"], groups: ["ops"] },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    // The recycle process manager ends every live session holding the old claims, on every instance.
    // Validation refuses it as soon as the user's new claims are known; the process manager then records
    // the per-session recycle.
    await eventually(() => a.validator.validateFromMemory(mcpSession)?.valid === false, 5_000);
    await eventually(async () => (await statusOf(a, sessionIdOf(mcpSession))).status === "recycled", 5_000);
    expect(await statusOf(a, sessionIdOf(mcpSession))).toMatchObject({ end_reason: "claims_changed" });
    // The old credential was recycled too: the client must sign in again first.
    expect(await httpFailure(() => callTool(mcp, "session-stats"))).toBe(401);
    const after = await userSession(a, "rc-claims", { roles: ["user", "auditor"], groups: ["ops"] });
    const resumed = await connectMcp(urlB, bearerHeaders(after.token), mcpSession);
    expect(await httpFailure(() => callTool(resumed, "session-stats"))).toBe(404);

    const again = await connectMcp(urlB, bearerHeaders(after.token));
    expect(again.transport.sessionId).not.toBe(mcpSession);
    structured(await callTool(again, "session-stats"));
    expect((await statusOf(b, sessionIdOf(again.transport.sessionId ?? ""))).roles).toEqual([
      "user",
      "auditor",
    ]);
    await again.client.close();
  });

  it("a request whose credential carries other claims than the MCP session recycles it at once", async () => {
    const old = await userSession(a, "rc-auto", { roles: ["user"] });
    const mcp = await connectMcp(urlA, bearerHeaders(old.token));
    const mcpSession = mcp.transport.sessionId ?? "";
    // The same user, now holding a credential with more roles (as after a sign-in with a fresh IdP token).
    const fresh = await userSession(a, "rc-auto", { roles: ["user", "admin"] });
    const stale = await connectMcp(urlB, bearerHeaders(fresh.token), mcpSession);
    expect(await httpFailure(() => callTool(stale, "session-stats"))).toBe(404);
    expect(await statusOf(b, sessionIdOf(mcpSession))).toMatchObject({
      status: "recycled",
      end_reason: "claims_changed",
    });
    // Even the old credential can no longer use it.
    await eventually(() => a.validator.validateFromMemory(mcpSession)?.valid === false, 2_000);
    expect(await httpFailure(() => callTool(mcp, "session-stats"))).toBe(404);
    const again = await connectMcp(urlB, bearerHeaders(fresh.token));
    expect(structured<{ scope: string }>(await callTool(again, "session-stats")).scope).toBe("global");
    await again.client.close();
  });

  it("recycle-sessions on one's own sessions ends this MCP session too: 404, then re-initialize", async () => {
    const credential = await userSession(a, "rc-self");
    const mcp = await connectMcp(urlA, bearerHeaders(credential.token));
    const mcpSession = mcp.transport.sessionId ?? "";
    await a.service.readYourWrites();
    const recycled = structured(await callTool(mcp, "recycle-sessions"));
    expect(recycled).toEqual({ recycled: 2, userId: "rc-self" });
    const onB = await connectMcp(urlB, bearerHeaders(credential.token), mcpSession);
    await eventually(() => b.validator.validateFromMemory(mcpSession)?.valid === false, 2_000);
    // The credential was recycled with it, so the client is refused outright until it signs in again.
    expect(await httpFailure(() => callTool(onB, "session-stats"))).toBe(401);
    const signedIn = await userSession(a, "rc-self");
    const stillOld = await connectMcp(urlB, bearerHeaders(signedIn.token), mcpSession);
    expect(await httpFailure(() => callTool(stillOld, "session-stats"))).toBe(404);
    const again = await connectMcp(urlB, bearerHeaders(signedIn.token));
    structured(await callTool(again, "session-stats"));
    await again.client.close();
  });
});
