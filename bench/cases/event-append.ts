import { jetstream } from "@nats-io/jetstream";
import { v7 as uuidv7 } from "uuid";
import { encodeEvent } from "../../src/adapters/codec/event-codec.ts";
import { connectNats } from "../../src/adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "../../src/adapters/jetstream/event-log.ts";
import { createEventSubjects } from "../../src/adapters/jetstream/subjects.ts";
import type { EventMetadata, SessionCreated } from "../../src/domain/events.ts";
import { sessionStream } from "../../src/domain/events.ts";
import type { Benchmark } from "../lib/bench.ts";
import { withEnvironment } from "../lib/environment.ts";
import { metadataFor, sessionCreated } from "../lib/events.ts";
import { formatNumber, judge, type Result, type Target } from "../lib/report.ts";
import { alternate, median, pairedRatio } from "../lib/stats.ts";

const IN_FLIGHT = 1_000;
const TARGET: Target = { kind: "min-ratio", value: 0.8 };
const INFO: Target = { kind: "none" };

type Prepared = { sessionId: string; event: SessionCreated; metadata: EventMetadata; messageId: string };

/** SessionCreated events as `POST /v1/sessions` appends them. */
function prepare(count: number): Prepared[] {
  const now = Date.now();
  return Array.from({ length: count }, () => {
    const sessionId = uuidv7();
    const metadata = metadataFor(now);
    return {
      sessionId,
      event: sessionCreated(sessionId, "bench-user", now),
      metadata,
      messageId: metadata.commandId,
    };
  });
}

type Round = { rate: number; cpuUsPerEvent: number };

/**
 * Runs `count` operations with `inFlight` outstanding at any time: operations per second, and this
 * process's CPU per operation (the client side; the NATS server is its own process).
 */
async function pipelined(
  count: number,
  inFlight: number,
  op: (i: number) => Promise<unknown>,
): Promise<Round> {
  let next = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const lane = async () => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, lane));
  const elapsed = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return { rate: (count / elapsed) * 1000, cpuUsPerEvent: (cpu.user + cpu.system) / count };
}

/**
 * Issue 2: EventLog.append on JetStream (encode + zod check, expected-last-subject-sequence, msg id) with
 * 1000 appends in flight, against raw `js.publish` of the same pre-encoded payloads with the same
 * headers (msgID + expected last subject sequence 0), on one connection opened by Tessera's own
 * connectNats (so the client options — noAsyncTraces — are the same). An info row compares it, in rounds of
 * its own, with a raw publisher that encodes each event with plain JSON.stringify inside the clock: the
 * judged gap split into what any publisher of these events pays and what the codec's check adds.
 */
export const eventAppend: Benchmark = {
  name: "event-append",
  issue: 2,
  description:
    "JetStream EventLog.append, 1000 in flight, vs raw js.publish with the same headers and connection",
  run: (options) =>
    withEnvironment("eventappend", async (env) => {
      const nc = await connectNats(env.natsUrl, "bench-event-append");
      env.defer(() => nc.close());
      const log = await createJetStreamEventLog({ nc, prefix: env.prefix });
      env.defer(() => log.close());
      const js = jetstream(nc);
      const subjects = createEventSubjects(env.prefix);
      const count = Math.round(20_000 * options.scale);

      const appendAll = (batch: Prepared[]) =>
        pipelined(batch.length, IN_FLIGHT, async (i) => {
          const p = batch[i] as Prepared;
          const result = await log.append(sessionStream(p.sessionId), p.event, p.metadata, {
            expectedVersion: 0,
            messageId: p.messageId,
          });
          if (result.duplicate) throw new Error("unexpected duplicate");
        });
      const publishAll = (batch: Prepared[]) => {
        const raw = batch.map((p) => ({
          subject: subjects.subjectFor(sessionStream(p.sessionId)),
          payload: encodeEvent(p.event, p.metadata),
          messageId: p.messageId,
        }));
        return pipelined(raw.length, IN_FLIGHT, async (i) => {
          const r = raw[i] as (typeof raw)[number];
          const ack = await js.publish(r.subject, r.payload, {
            msgID: r.messageId,
            expect: { lastSubjectSequence: 0 },
            timeout: 5_000,
          });
          if (ack.duplicate) throw new Error("unexpected duplicate");
        });
      };

      // Plain JSON.stringify inside the clock: what any publisher of these events pays at least.
      const publishEncodingAll = (batch: Prepared[]) =>
        pipelined(batch.length, IN_FLIGHT, async (i) => {
          const p = batch[i] as Prepared;
          const envelope = {
            type: p.event.type,
            version: p.event.version,
            data: p.event.data,
            metadata: p.metadata,
          };
          const ack = await js.publish(
            subjects.subjectFor(sessionStream(p.sessionId)),
            Buffer.from(JSON.stringify(envelope)),
            { msgID: p.messageId, expect: { lastSubjectSequence: 0 }, timeout: 5_000 },
          );
          if (ack.duplicate) throw new Error("unexpected duplicate");
        });

      await appendAll(prepare(Math.min(count, 5_000)));
      await publishAll(prepare(Math.min(count, 5_000)));
      await publishEncodingAll(prepare(Math.min(count, 5_000)));
      const rounds = 4;
      const compare = (label: string, baselineRound: (batch: Prepared[]) => Promise<Round>) =>
        alternate(rounds, async (which, round) => {
          const batch = prepare(count);
          const result = which === "subject" ? await appendAll(batch) : await baselineRound(batch);
          options.log(
            `  round ${round + 1} ${which === "subject" ? "EventLog.append" : label}: ${formatNumber(result.rate)} events/s, client CPU ${formatNumber(result.cpuUsPerEvent)} µs/event`,
          );
          return result;
        });
      const judged = await compare("raw publish", publishAll);
      const encoding = await compare("raw publish + JSON.stringify", publishEncodingAll);
      const title = `EventLog.append (JetStream), ${IN_FLIGHT} in flight, ${formatNumber(count)} SessionCreated per round`;
      return [
        appendResult(title, judged, {
          label: "raw js.publish, same payloads and headers",
          note: "payloads encoded before the clock starts",
          target: TARGET,
        }),
        appendResult(`${title}: against a raw publisher that encodes`, encoding, {
          label: "raw js.publish of JSON.stringify(envelope), same headers",
          note: "plain JSON.stringify inside the clock, no validation; the rest of the judged row's gap is the codec",
          target: INFO,
        }),
      ];
    }),
};

function appendResult(
  title: string,
  runs: { baseline: Round[]; subject: Round[] },
  baseline: { label: string; note: string; target: Target },
): Result {
  const rates = (rs: Round[]) => rs.map((r) => r.rate);
  const cpu = (rs: Round[]) => median(rs.map((r) => r.cpuUsPerEvent));
  const value = median(rates(runs.subject));
  const ratio = pairedRatio(rates(runs.baseline), rates(runs.subject));
  return {
    bench: "event-append",
    title,
    subject: {
      value,
      unit: "events/s",
      label: "Tessera",
      detail: `median of ${runs.subject.length} rounds: ${rates(runs.subject).map(formatNumber).join(", ")} events/s; client CPU ${formatNumber(cpu(runs.subject))} µs/event`,
    },
    baseline: {
      value: median(rates(runs.baseline)),
      unit: "events/s",
      label: baseline.label,
      detail: `${rates(runs.baseline).map(formatNumber).join(", ")} events/s; client CPU ${formatNumber(cpu(runs.baseline))} µs/event (${baseline.note})`,
    },
    ratio,
    target: baseline.target,
    pass: judge(baseline.target, value, ratio),
    notes: [],
  };
}
