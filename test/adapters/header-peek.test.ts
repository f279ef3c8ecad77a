import { DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { headerBlockMentions } from "../../src/adapters/jetstream/header-peek.ts";
import { connectNats, removeNatsPrefix, uniquePrefix } from "../support/services.ts";

/**
 * headerBlockMentions reads private fields of the NATS client. These pin that it finds them in the
 * installed version (it answers true/false, never undefined), and that its answer matches the decoded
 * headers for messages with, without, and with lookalike headers.
 */

const prefix = uniquePrefix("peek");
const stream = `${prefix.toUpperCase()}_PEEK`;
const NAME = new TextEncoder().encode("traceparent");
let nc: NatsConnection;

beforeAll(async () => {
  nc = await connectNats();
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`] });
  const js = jetstream(nc);
  const h = (entries: [string, string][]) => {
    const built = headers();
    for (const [k, v] of entries) built.append(k, v);
    return built;
  };
  await js.publish(`${prefix}.plain`, "no headers");
  await js.publish(`${prefix}.id`, "{}", { headers: h([["Nats-Msg-Id", "m1"]]) });
  await js.publish(`${prefix}.traced`, "{}", {
    headers: h([
      ["Nats-Msg-Id", "m2"],
      ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
    ]),
  });
  await js.publish(`${prefix}.lookalike`, "{}", { headers: h([["x-note", "a traceparent-ish value"]]) });
  await js.publish(`${prefix}.payload`, "traceparent in the payload only");
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await nc.close();
});

async function readAll(): Promise<JsMsg[]> {
  const consumer = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 10 });
  const out: JsMsg[] = [];
  try {
    for await (const m of messages) {
      out.push(m);
      if (m.info.pending === 0) break;
    }
  } finally {
    messages.stop();
    await consumer.delete().catch(() => {});
  }
  return out;
}

describe("headerBlockMentions", () => {
  it("answers from the raw header bytes, in agreement with the decoded headers", async () => {
    const messages = await readAll();
    const bySubject = Object.fromEntries(
      messages.map((m) => [m.subject.slice(prefix.length + 1), headerBlockMentions(m, NAME)]),
    );
    expect(bySubject).toEqual({
      plain: false,
      id: false,
      traced: true,
      // A mention in a value says "maybe": the caller then decodes and finds no such header.
      lookalike: true,
      payload: false,
    });
    for (const m of messages) {
      if (headerBlockMentions(m, NAME) === false) expect(m.headers?.get("traceparent") ?? "").toBe("");
    }
    const traced = messages.find((m) => m.subject.endsWith(".traced"));
    expect(traced?.headers?.get("traceparent")).toMatch(/^00-/);
  });

  it("says undefined (decode as usual) for a message it cannot look into", () => {
    expect(headerBlockMentions({} as JsMsg, NAME)).toBeUndefined();
    expect(headerBlockMentions({ msg: { _msg: { hdr: 5 }, _rdata: "x" } } as unknown as JsMsg, NAME)).toBe(
      undefined,
    );
  });
});
