import { once } from "node:events";
import WebSocket from "ws";

export type RpcResponse = {
  jsonrpc: "2.0";
  id: string | number | null;
  result?: Record<string, unknown> & { session?: Record<string, unknown> };
  error?: { code: number; message: string; data?: Record<string, unknown> };
};

/** A JSON-RPC client over one WebSocket, for tests: calls by id, raw sends, and how the socket closed. */
export type RpcSocket = {
  socket: WebSocket;
  call(method: string, params?: unknown): Promise<RpcResponse>;
  /** Sends text as is and resolves with the next message that answers it (id null or the given one). */
  sendRaw(text: string): Promise<RpcResponse>;
  closed: Promise<{ code: number; reason: string }>;
};

export async function connect(
  url: string,
  options: { headers?: Record<string, string>; protocols?: string[] } = {},
): Promise<RpcSocket> {
  const socket = new WebSocket(url, options.protocols ?? [], { headers: options.headers ?? {} });
  const pending = new Map<string | number | null, (response: RpcResponse) => void>();
  socket.on("message", (data) => {
    const response = JSON.parse(String(data)) as RpcResponse;
    const waiter = pending.get(response.id);
    pending.delete(response.id);
    waiter?.(response);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await once(socket, "open");
  let next = 1;
  const wait = (id: string | number | null) =>
    new Promise<RpcResponse>((resolve, reject) => {
      pending.set(id, resolve);
      closed.then((c) => reject(new Error(`closed ${c.code} ${c.reason}`)));
    });
  return {
    socket,
    closed,
    call(method, params) {
      const id = next++;
      const answer = wait(id);
      socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      return answer;
    },
    sendRaw(text) {
      let id: string | number | null = null;
      try {
        const parsed = JSON.parse(text) as { id?: unknown };
        if (typeof parsed.id === "string" || typeof parsed.id === "number") id = parsed.id;
      } catch {}
      const answer = wait(id);
      socket.send(text);
      return answer;
    },
  };
}

/** The HTTP status of a refused upgrade (the `ws` client reports it as unexpected-response). */
export async function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  const socket = new WebSocket(url, { headers });
  return new Promise<number>((resolve, reject) => {
    socket.once("unexpected-response", (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once("open", () => {
      socket.close();
      reject(new Error("upgrade was accepted"));
    });
    socket.once("error", () => {});
  });
}
