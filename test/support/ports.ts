import { once } from "node:events";
import { createServer } from "node:net";

/** A TCP port nothing listens on right now, for a test's private server (NATS, Postgres, a fake). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const address = probe.address();
  probe.close();
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
