import { randomUUID } from "node:crypto";
import formbody from "@fastify/formbody";
import Fastify, { LogController } from "fastify";

/**
 * The baseline for the HTTP benchmarks: Fastify with the same constructor settings as Tessera's app
 * (src/adapters/http/app.ts — logger, redaction, body limit, request ids, no per-request logs), and routes
 * that parse the same request and answer a JSON body of the same shape and size, with nothing behind
 * them. Run as its own process by bench/lib/processes.ts.
 */

const logLevel = process.env.LOG_LEVEL ?? "warn";
/** The password of the login benchmark's user (bench/cases/auth.ts). */
const BENCH_PASSWORD = process.env.BENCH_PASSWORD ?? "bench-password-0123456789";
const app = Fastify({
  logger: {
    level: logLevel,
    redact: ["req.headers.authorization", "req.headers['x-admin-key']", "req.headers['mcp-session-id']"],
  },
  bodyLimit: 65_536,
  genReqId: () => randomUUID(),
  trustProxy: false,
  logController: new LogController({ disableRequestLogging: true }),
});

const sessionView = (id: string, userId: string) => ({
  id,
  user_id: userId,
  username: userId,
  kind: "api",
  status: "active",
  roles: ["user"],
  groups: [],
  client: null,
  ip_address: "127.0.0.1",
  user_agent: null,
  created_at: "2026-01-01T00:00:00.000Z",
  last_activity_at: "2026-01-01T00:00:00.000Z",
  expires_at: "2026-01-01T01:00:00.000Z",
  idle_expires_at: null,
  ended_at: null,
  end_reason: null,
  metadata: {},
});

// Tessera's app parses forms too (the token endpoint takes them).
await app.register(formbody, { bodyLimit: 65_536 });

app.get("/ready", async () => ({ ok: true }));

// Same body as POST /v1/sessions/validate; the session id is taken from the token so the answer depends on the request.
app.post("/validate", async (request) => {
  const body = (request.body ?? {}) as { token?: string };
  const token = typeof body.token === "string" ? body.token : "";
  const userId = "bench-user";
  return {
    valid: true,
    session: sessionView(token.slice(4, 40), userId),
    user: { id: userId, username: userId, roles: ["user"], groups: [] },
  };
});

// Same body as POST /v1/sessions with x-admin-key.
app.post("/sessions", async (request, reply) => {
  const body = (request.body ?? {}) as { user_id?: string };
  const id = randomUUID();
  reply.header("location", `/v1/sessions/${id}`);
  return reply
    .code(201)
    .send({ session: sessionView(id, body.user_id ?? "bench-user"), token: `tss_${id}_${"x".repeat(43)}` });
});

// The least a durable create can do (bench/cases/create-http.ts, "durable floor"): the same answer as
// /sessions, after one SessionCreated is appended to JetStream and acknowledged, on a connection opened by
// Tessera's own connectNats (same client options and patches). Only when BENCH_NATS_URL is set.
const durable = await openDurableAppend(process.env.BENCH_NATS_URL, process.env.BENCH_STREAM);
if (durable) {
  app.post("/sessions-durable", async (request, reply) => {
    const body = (request.body ?? {}) as { user_id?: string };
    const id = await durable.append(body.user_id ?? "bench-user");
    reply.header("location", `/v1/sessions/${id}`);
    return reply
      .code(201)
      .send({ session: sessionView(id, body.user_id ?? "bench-user"), token: `tss_${id}_${"x".repeat(43)}` });
  });
}

// Same as GET /v1/sessions/{id}.
app.get("/sessions/:id", async (request) => {
  const { id } = request.params as { id: string };
  return sessionView(id, "bench-user");
});

// Same as POST /v1/auth/token's dominant cost: one argon2id verification with Tessera's parameters. Only
// when the auth feature (and its argon2 binding) is in the tree.
const argon2 = await loadArgon2();
if (argon2) {
  const passwordHash = await argon2.hash(BENCH_PASSWORD, argon2.params);
  app.post("/login", async (request, reply) => {
    const body = (request.body ?? {}) as { password?: string };
    const ok = await argon2.verify(passwordHash, String(body.password ?? ""));
    if (!ok) return reply.code(400).send({ error: "invalid_grant", error_description: "bad credentials" });
    const id = randomUUID();
    return {
      access_token: `eyJhbGciOiJFZERTQSJ9.${"x".repeat(400)}.${"y".repeat(86)}`,
      token_type: "Bearer",
      expires_in: 900,
      refresh_token: `tsr_${id}_${"x".repeat(43)}`,
      scope: "sessions:read sessions:write",
      session_id: id,
    };
  });
}

async function openDurableAppend(natsUrl: string | undefined, stream: string | undefined) {
  if (natsUrl === undefined || stream === undefined) return undefined;
  const [{ jetstream, jetstreamManager }, { connectNats }, { encodeEvent }, events, { v7 }] =
    await Promise.all([
      import("@nats-io/jetstream"),
      import("../../src/adapters/jetstream/connection.ts"),
      import("../../src/adapters/codec/event-codec.ts"),
      import("../lib/events.ts"),
      import("uuid"),
    ]);
  const nc = await connectNats(natsUrl, "bench-durable-floor");
  await (await jetstreamManager(nc)).streams.add({ name: stream, subjects: [`${stream}.>`] });
  const js = jetstream(nc);
  return {
    async append(userId: string): Promise<string> {
      const id = v7();
      const now = Date.now();
      const metadata = events.metadataFor(now);
      const payload = encodeEvent(events.sessionCreated(id, userId, now), metadata);
      await js.publish(`${stream}.${id}`, payload, {
        msgID: metadata.commandId,
        expect: { lastSubjectSequence: 0 },
        timeout: 5_000,
      });
      return id;
    },
  };
}

async function loadArgon2() {
  try {
    const [binding, directory] = await Promise.all([
      import("@node-rs/argon2"),
      import("../../src/adapters/postgres/user-directory.ts"),
    ]);
    return { hash: binding.hash, verify: binding.verify, params: directory.ARGON2_PARAMS };
  } catch {
    return undefined;
  }
}

const port = Number(process.env.PORT ?? 0);
await app.listen({ host: process.env.HOST ?? "127.0.0.1", port });

const stop = () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
