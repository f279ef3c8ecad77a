import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { SERVER_INFO } from "./mcp-server.ts";

/**
 * Credentials for the remote /mcp. `headers(renew)` is asked again with renew=true after a 401, so a
 * password-based provider can sign in again when its access token runs out.
 */
export type RemoteCredentials = { headers(renew: boolean): Promise<Record<string, string>> };

/** A fixed Bearer token (tss_… or JWT) or admin key. */
export function staticCredentials(headers: Record<string, string>): RemoteCredentials {
  return { headers: async () => headers };
}

/** Signs in with the token endpoint's password grant; signs in again when the access token is refused. */
export function passwordCredentials(baseUrl: URL, username: string, password: string): RemoteCredentials {
  let current: Record<string, string> | undefined;
  return {
    async headers(renew) {
      if (current && !renew) return current;
      const response = await fetch(new URL("/v1/auth/token", baseUrl), {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: new URLSearchParams({ grant_type: "password", username, password }).toString(),
      });
      if (!response.ok) throw new Error(`Tessera refused the sign-in (HTTP ${response.status})`);
      const body = (await response.json()) as { access_token?: unknown };
      if (typeof body.access_token !== "string")
        throw new Error("Tessera's token response has no access_token");
      current = { authorization: `Bearer ${body.access_token}` };
      return current;
    },
  };
}

/**
 * The stdio face of a running Tessera: a local MCP server whose tools are the remote /mcp's own (listed and
 * called through the SDK client), so stdio and HTTP can never drift apart. A 404 (the MCP session ended:
 * idle expiry, recycle, DELETE) re-initializes as the transport spec says; a 401 renews credentials once.
 */
export function createHttpProxyServer(options: { baseUrl: URL; credentials: RemoteCredentials }): Server {
  let remote: Promise<Client> | undefined;

  async function connect(renew: boolean): Promise<Client> {
    const headers = await options.credentials.headers(renew);
    const transport = new StreamableHTTPClientTransport(new URL("/mcp", options.baseUrl), {
      requestInit: { headers },
    });
    const client = new Client({ name: "tessera-stdio", version: SERVER_INFO.version });
    await client.connect(transport);
    return client;
  }

  function reconnect(renew: boolean): Promise<Client> {
    const previous = remote;
    remote = connect(renew);
    // The old session is gone or unusable; closing its client only drops local state.
    previous?.then((client) => client.close()).catch(() => undefined);
    remote.catch(() => {
      remote = undefined;
    });
    return remote;
  }

  async function withRemote<T>(call: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await call(await (remote ?? reconnect(false)));
    } catch (error) {
      if (!(error instanceof StreamableHTTPError) || (error.code !== 404 && error.code !== 401)) throw error;
      return call(await reconnect(error.code === 401));
    }
  }

  const server = new Server(SERVER_INFO, { capabilities: { tools: { listChanged: false } } });
  server.setRequestHandler(ListToolsRequestSchema, (request) =>
    withRemote((client) => client.listTools(request.params)),
  );
  server.setRequestHandler(CallToolRequestSchema, (request) =>
    withRemote((client) => client.callTool(request.params)),
  );
  server.onclose = () => {
    remote?.then((client) => client.close()).catch(() => undefined);
  };
  return server;
}
