import { type ChildProcess, spawn } from "node:child_process";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import type { Tessera } from "../../src/main.ts";
import { freePort } from "../support/ports.ts";
import {
  ADMIN_KEY,
  adminHeaders,
  eventually,
  type Pair,
  startEmbedded,
  startPair,
} from "../support/tessera.ts";
import {
  callTool,
  connectMcp,
  httpFailure,
  initializeMessage,
  listen,
  MCP_ACCEPT,
  MCP_TOOL_NAMES,
  type McpConnection,
  structured,
} from "./support.ts";

/**
 * Session URLs (seed 002): `POST /v1/sessions` answers `session_url`, a complete MCP server URL that needs
 * no header — the SDK client below is given nothing but the URL.
 */
let pair: Pair;
let urlA: string;
let urlB: string;
const connections: McpConnection[] = [];

beforeAll(async () => {
  pair = await startPair("mcpurl");
  urlA = await listen(pair.a);
  urlB = await listen(pair.b);
});

afterAll(async () => {
  for (const { client } of connections) await client.close().catch(() => undefined);
  await pair?.close();
});

async function createOverHttp(baseUrl: string, body: Record<string, unknown>, headers = {}) {
  const response = await fetch(new URL("/v1/sessions", baseUrl), {
    method: "POST",
    headers: { ...adminHeaders, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(201);
  return (await response.json()) as { token: string; session: { id: string }; session_url?: string };
}

/** An SDK client configured with the URL alone (no Authorization, no x-admin-key). */
async function connectUrl(url: string, sessionId?: string): Promise<McpConnection> {
  const transport = new StreamableHTTPClientTransport(
    new URL(url),
    sessionId === undefined ? {} : { sessionId },
  );
  const client = new Client({ name: "url-only", version: "1.0.0" });
  await client.connect(transport);
  connections.push({ client, transport });
  return { client, transport };
}

/** A raw POST to any URL (the session URL or /mcp), JSON in and out. */
async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...MCP_ACCEPT, ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text === "" ? undefined : JSON.parse(text),
  };
}

const withoutInstance = (body: Record<string, unknown>) => {
  const { instance: _instance, ...rest } = body;
  return rest;
};

describe("session URL", () => {
  it("is returned on create and serves initialize, tools/list and tool calls with no header at all", async () => {
    const created = await createOverHttp(urlA, { user_id: "url-alice", roles: ["user"] });
    expect(created.session_url).toBe(`${urlA}/mcp/u/${created.token}`);

    const connection = await connectUrl(created.session_url as string);
    const mcpSessionId = connection.transport.sessionId;
    expect(mcpSessionId).toMatch(/^tss_/);
    const tools = await connection.client.listTools();
    expect(tools.tools.map((tool) => tool.name).sort()).toEqual(MCP_TOOL_NAMES);
    // The URL's session's own permissions: a user, who sees only their own sessions.
    const listed = structured<{ sessions: Array<{ id: string; userId: string; kind: string }> }>(
      await callTool(connection, "list-sessions", { status: "all" }),
    );
    expect(listed.sessions.map((s) => s.userId)).toEqual(listed.sessions.map(() => "url-alice"));
    expect(listed.sessions.map((s) => s.id)).toContain(created.session.id);
    const stats = structured<{ scope: string }>(await callTool(connection, "session-stats"));
    expect(stats.scope).toBe("user");

    // The MCP session opened through the URL continues on the other instance (no sticky routing).
    const onB = await connectUrl(`${urlB}/mcp/u/${created.token}`, mcpSessionId);
    expect(structured<{ scope: string }>(await callTool(onB, "session-stats")).scope).toBe("user");
  });

  it("is refused on both instances the moment its session is invalidated, as /mcp refuses the token", async () => {
    const created = await createOverHttp(urlA, { user_id: "url-bob", roles: ["user"] });
    const path = `/mcp/u/${created.token}`;
    const connection = await connectUrl(`${urlA}${path}`);
    const mcpSessionId = connection.transport.sessionId as string;

    const ended = await pair.a.app.inject({
      method: "DELETE",
      url: `/v1/sessions/${created.session.id}`,
      headers: adminHeaders,
    });
    expect(ended.statusCode).toBe(200);

    for (const base of [urlA, urlB]) {
      await eventually(
        async () => (await post(`${base}${path}`, initializeMessage("2025-06-18"))).status === 401,
      );
      const viaUrl = await post(`${base}${path}`, initializeMessage("2025-06-18"));
      const viaMcp = await post(`${base}/mcp`, initializeMessage("2025-06-18"), {
        authorization: `Bearer ${created.token}`,
      });
      expect(viaUrl.status).toBe(401);
      expect(viaUrl.headers.get("www-authenticate")).toBe(viaMcp.headers.get("www-authenticate"));
      expect(withoutInstance(viaUrl.body)).toEqual(withoutInstance(viaMcp.body));
      expect(viaUrl.body.reason).toBe("invalidated");
      expect(viaUrl.body.instance).toBe("/mcp/u/tss_[redacted]");
      // The MCP session opened through it is useless too: its credential is gone.
      const continued = await post(
        `${base}${path}`,
        { jsonrpc: "2.0", id: 2, method: "tools/list" },
        {
          "mcp-session-id": mcpSessionId,
          "mcp-protocol-version": "2025-06-18",
        },
      );
      expect(continued.status).toBe(401);
    }
    expect(await httpFailure(() => callTool(connection, "session-stats"))).toBe(401);
  });

  it("refuses forged URLs exactly as /mcp refuses the same bearer, whatever else the request carries", async () => {
    const forged = [
      `tss_01980000-0000-7000-8000-000000000000_${"A".repeat(43)}`,
      "tss_short",
      "not-a-token",
      "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
    ];
    for (const token of forged) {
      const viaUrl = await post(`${urlA}/mcp/u/${token}`, initializeMessage("2025-06-18"), adminHeaders);
      const viaMcp = await post(`${urlA}/mcp`, initializeMessage("2025-06-18"), {
        authorization: `Bearer ${token.startsWith("tss_") ? token : "tss_"}`,
      });
      expect(viaUrl.status, token).toBe(401);
      expect(withoutInstance(viaUrl.body), token).toEqual(withoutInstance(viaMcp.body));
    }
    // An admin key or another bearer sent along never stands in for (or adds to) the URL's session.
    const alice = await createOverHttp(urlA, { user_id: "url-carol", roles: ["user"] });
    const initialized = await post(alice.session_url as string, initializeMessage("2025-06-18"), {
      ...adminHeaders,
    });
    expect(initialized.status).toBe(200);
    const mcpSessionId = initialized.headers.get("mcp-session-id") as string;
    const listed = await post(
      alice.session_url as string,
      {
        jsonrpc: "2.0",
        id: 2,
        method: "tools/call",
        params: { name: "list-sessions", arguments: { userId: "someone-else" } },
      },
      { ...adminHeaders, "mcp-session-id": mcpSessionId, "mcp-protocol-version": "2025-06-18" },
    );
    expect(listed.status).toBe(200);
    expect(listed.body.result.isError).toBe(true);
    expect(JSON.parse(listed.body.result.content[0].text).code).toBe("ACCESS_DENIED");
  });

  it("keeps /mcp's Host check", async () => {
    const created = await createOverHttp(urlA, { user_id: "url-dave", roles: ["user"] });
    const refused = await pair.a.app.inject({
      method: "POST",
      url: `/mcp/u/${created.token}`,
      headers: { ...MCP_ACCEPT, host: "evil.example" },
      payload: initializeMessage("2025-06-18"),
    });
    expect(refused.statusCode).toBe(403);
    // And a Host /mcp would refuse never shapes a session URL.
    for (const host of ["evil.example", "127.0.0.1:1/x", "127.0.0.1@evil.example"]) {
      const response = await pair.a.app.inject({
        method: "POST",
        url: "/v1/sessions",
        headers: { ...adminHeaders, host },
        payload: { user_id: "url-dave" },
      });
      expect(response.statusCode, host).toBe(201);
      expect(response.json().session_url, host).toBeUndefined();
    }
  });

  it("never lands in the audit trail", async () => {
    const created = await createOverHttp(urlA, { user_id: "url-erin", roles: ["user"] });
    const connection = await connectUrl(created.session_url as string);
    await callTool(connection, "session-stats");
    const secret = created.token.slice(-43);
    let audit = "";
    await eventually(async () => {
      const response = await pair.a.app.inject({
        method: "GET",
        url: "/v1/audit?user_id=url-erin",
        headers: adminHeaders,
      });
      audit = response.body;
      // The URL's session and the MCP session opened through it.
      return response.statusCode === 200 && (response.json().events as unknown[]).length >= 2;
    });
    expect(audit).toContain(created.session.id);
    expect(audit).not.toContain(secret);
    expect(audit).not.toContain("/mcp/u/");
  });
});

describe("session URL with TESSERA_PUBLIC_URL", () => {
  let tessera: Tessera;
  beforeAll(async () => {
    tessera = await startEmbedded({ TESSERA_PUBLIC_URL: "https://tessera.example.com/base/" });
  });
  afterAll(async () => tessera?.close());

  it("is built on the public URL, whose host /mcp then accepts", async () => {
    const created = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: { ...adminHeaders, host: "internal:8080" },
      payload: { user_id: "pub-alice", roles: ["user"] },
    });
    const { token, session_url } = created.json() as { token: string; session_url: string };
    expect(session_url).toBe(`https://tessera.example.com/base/mcp/u/${token}`);
    const initialized = await tessera.app.inject({
      method: "POST",
      url: `/mcp/u/${token}`,
      headers: { ...MCP_ACCEPT, host: "tessera.example.com" },
      payload: initializeMessage("2025-06-18"),
    });
    expect(initialized.statusCode).toBe(200);
  });

  it("is returned by the create-session tool next to its token", async () => {
    const base = await listen(tessera);
    const admin = await connectMcp(base, adminHeaders);
    connections.push(admin);
    const login = structured<{ sessionToken: string; sessionUrl: string }>(
      await callTool(admin, "create-session", { username: "demo", password: "demo123!" }),
    );
    expect(login.sessionUrl).toBe(`https://tessera.example.com/base/mcp/u/${login.sessionToken}`);
  });
});

describe("logs at debug level", () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill("SIGTERM");
  });

  it("never contain a session URL's token (a real `tessera serve` process, stdout and stderr)", async () => {
    const port = await freePort();
    child = spawn(process.execPath, ["bin/tessera.mjs", "serve"], {
      cwd: process.cwd(),
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        HOST: "127.0.0.1",
        PORT: String(port),
        LOG_LEVEL: "debug",
        TESSERA_ADMIN_KEY: ADMIN_KEY,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    await eventually(() => output.includes("tessera listening"), 30_000);
    const base = `http://127.0.0.1:${port}`;

    const created = await createOverHttp(base, { user_id: "log-alice", roles: ["user"] });
    const url = created.session_url as string;
    const connection = await connectUrl(url);
    await connection.client.listTools();
    await callTool(connection, "list-sessions");
    // What an OAuth-capable client probes after a 401, and a refused request.
    await fetch(`${base}/.well-known/oauth-protected-resource/mcp/u/${created.token}`);
    await post(`${base}/mcp/u/${created.token}x`, initializeMessage("2025-06-18"));
    await fetch(`${base}/v1/audit?user_id=log-alice`, { headers: adminHeaders });
    await connection.client.close();

    await eventually(() => (output.match(/request completed/g) ?? []).length >= 7, 5_000);
    expect(output).toContain('"url":"/mcp/u/tss_[redacted]"');
    expect(output).toContain('"url":"/.well-known/oauth-protected-resource/mcp/u/tss_[redacted]"');
    expect(output).not.toContain(created.token.slice(-43));
    expect(output).not.toContain(created.token);
    // A real process starting an embedded database: up to 30 s on a busy machine (the wait above).
  }, 60_000);
});

describe("traces", () => {
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

  it("name the session URL's route pattern, never its token", async () => {
    const created = await tessera.app.inject({
      method: "POST",
      url: "/v1/sessions",
      headers: adminHeaders,
      payload: { user_id: "traced-url" },
    });
    const token: string = created.json().token;
    const initialized = await tessera.app.inject({
      method: "POST",
      url: `/mcp/u/${token}`,
      headers: MCP_ACCEPT,
      payload: initializeMessage("2025-06-18"),
    });
    expect(initialized.statusCode).toBe(200);
    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toContain("POST /mcp/u/:token");
    const recorded = JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes })));
    expect(recorded).not.toContain(token.slice(-43));
  });
});

describe("TESSERA_PUBLIC_URL", () => {
  it("is an http(s) base without credentials, query or fragment; https in multi-user mode", () => {
    expect(loadConfig({ TESSERA_PUBLIC_URL: "https://t.example.com/" }).publicUrl).toBe(
      "https://t.example.com",
    );
    expect(loadConfig({ TESSERA_PUBLIC_URL: "http://t.example.com/x/" }).publicUrl).toBe(
      "http://t.example.com/x",
    );
    expect(loadConfig({ TESSERA_PUBLIC_URL: "https://t.example.com" }).mcp.allowedHosts).toEqual([
      "t.example.com",
    ]);
    expect(loadConfig({}).publicUrl).toBeUndefined();
    for (const value of [
      "ftp://t.example.com",
      "https://u:p@t.example.com",
      "https://t.example.com/?a=1",
      "t",
    ]) {
      expect(() => loadConfig({ TESSERA_PUBLIC_URL: value }), value).toThrow(/TESSERA_PUBLIC_URL/);
    }
    const multiUser = { TESSERA_MULTIUSER: "true", TESSERA_TLS_CERT_FILE: "c", TESSERA_TLS_KEY_FILE: "k" };
    expect(() => loadConfig({ ...multiUser, TESSERA_PUBLIC_URL: "http://t.example.com" })).toThrow(/https/);
    expect(loadConfig({ ...multiUser, TESSERA_PUBLIC_URL: "https://t.example.com" }).publicUrl).toBe(
      "https://t.example.com",
    );
  });
});
