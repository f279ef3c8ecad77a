import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { trackConnection } from "./connection-state.ts";
// Applied on import: every connection this process opens shares the patched request and protocol classes.
import "./flush-patch.ts";
import "./ordered-reset-patch.ts";
import "./request-one-patch.ts";

/**
 * Opens the process's NATS connection. It reconnects forever: a NATS restart or a cluster node going away
 * must not end the process, and the ordered consumers resume on their own after a reconnect. The first
 * connect still fails fast so a wrong NATS_URL is reported at start-up.
 */
export async function connectNats(
  urls: string,
  name: string,
  options: Omit<NodeConnectionOptions, "servers" | "name" | "noAsyncTraces" | "maxReconnectAttempts"> = {},
): Promise<NatsConnection> {
  const servers = urls
    .split(",")
    .map((url) => url.trim())
    .filter((url) => url.length > 0);
  if (servers.length === 0) throw new Error("No NATS server URL given");
  const nc = await connect({
    reconnectTimeWait: 1_000,
    timeout: 5_000,
    ...options,
    // Building an Error with a stack per request halves publish throughput; we do not need those traces.
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    servers,
    name,
  });
  // From the start, so a later disconnect is seen (connection-state.ts).
  trackConnection(nc);
  return nc;
}
