import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { delay, type NatsConnection, nanos } from "@nats-io/transport-node";
import type { Tick, TickLog } from "../../domain/ports.ts";

/**
 * The time stream `<PREFIX>_TIME` (subject `<prefix>.time.tick`): every instance publishes the current
 * epoch second once a second with `Nats-Msg-Id` = the second, so the duplicate window keeps one tick per
 * second however many instances run. Ticks are only triggers, so the stream keeps an hour of them.
 *
 * One durable pull consumer (`expiry`) is shared by every instance with explicit acks and
 * `max_ack_pending: 1`: the server hands out one tick at a time across the whole deployment, so exactly one
 * expiry pass runs at a time, on whichever instance pulled the tick. A tick not acknowledged within
 * `ack_wait` (its instance died mid-pass) goes to another instance; until then no other tick is handed
 * out, which bounds how long a crash can delay expiry.
 */

export const TICK_CONSUMER = "expiry";
export const TIME_STREAM_MAX_AGE_MS = 60 * 60_000;
export const TIME_STREAM_DUPLICATE_WINDOW_MS = 2 * 60_000;
const DEFAULT_ACK_WAIT_MS = 10_000;
const STREAM_NAME_IN_USE = 10058;
const STREAM_NOT_FOUND = 10059;

export function timeStreamName(prefix: string): string {
  return `${prefix.toUpperCase()}_TIME`;
}

export function tickSubject(prefix: string): string {
  return `${prefix}.time.tick`;
}

export type TimeStreamOptions = {
  replicas?: number | undefined;
  /** How long a tick may stay unacknowledged before another instance gets it (default 10 s). */
  ackWaitMs?: number | undefined;
};

export function timeStreamConfig(prefix: string, replicas: number): Partial<StreamConfig> {
  return {
    subjects: [tickSubject(prefix)],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(TIME_STREAM_MAX_AGE_MS),
    // An hour of ticks, twice over: ticks of seconds skewed between instances are distinct messages.
    max_msgs: 7_200,
    duplicate_window: nanos(TIME_STREAM_DUPLICATE_WINDOW_MS),
    num_replicas: replicas,
    allow_direct: true,
  };
}

export function tickConsumerConfig(ackWaitMs: number): Partial<ConsumerConfig> {
  return {
    durable_name: TICK_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(ackWaitMs),
    // One tick in flight across every instance: expiry passes never overlap.
    max_ack_pending: 1,
    max_deliver: -1,
    // A new deployment starts from the newest tick, not from an hour of old ones.
    deliver_policy: DeliverPolicy.Last,
  };
}

/** Creates the time stream and the shared tick consumer, or brings them to this configuration. */
export async function ensureTimeStream(
  jsm: JetStreamManager,
  prefix: string,
  options: TimeStreamOptions = {},
): Promise<void> {
  const name = timeStreamName(prefix);
  const config = timeStreamConfig(prefix, options.replicas ?? 1);
  const existing = await jsm.streams.info(name).catch((error: unknown) => {
    if (error instanceof JetStreamApiError && error.code === STREAM_NOT_FOUND) return undefined;
    throw error;
  });
  if (existing === undefined) {
    await jsm.streams.add({ ...config, name }).catch(async (error: unknown) => {
      if (!(error instanceof JetStreamApiError && error.code === STREAM_NAME_IN_USE)) throw error;
      await jsm.streams.update(name, config);
    });
  } else if (
    existing.config.max_age !== config.max_age ||
    existing.config.duplicate_window !== config.duplicate_window ||
    existing.config.num_replicas !== config.num_replicas
  ) {
    await jsm.streams.update(name, config);
  }
  const consumer = tickConsumerConfig(options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS);
  const current = await jsm.consumers.info(name, TICK_CONSUMER).catch(() => undefined);
  if (current === undefined) {
    // Two instances starting together both add it; with the same config the server accepts both.
    await jsm.consumers.add(name, consumer).catch(async (error: unknown) => {
      if ((await jsm.consumers.info(name, TICK_CONSUMER).catch(() => undefined)) === undefined) throw error;
    });
  } else if (
    current.config.ack_wait !== consumer.ack_wait ||
    current.config.max_ack_pending !== consumer.max_ack_pending
  ) {
    await jsm.consumers.update(name, TICK_CONSUMER, {
      ack_wait: consumer.ack_wait,
      max_ack_pending: consumer.max_ack_pending,
    });
  }
}

export type JetStreamTickLogOptions = TimeStreamOptions & {
  nc: NatsConnection;
  prefix: string;
  /** Failures the consumer recovers from (it restarts with a growing pause); for logs. */
  onError?: ((error: unknown) => void) | undefined;
};

export async function createJetStreamTickLog(options: JetStreamTickLogOptions): Promise<TickLog> {
  const { nc, prefix } = options;
  const jsm = await jetstreamManager(nc);
  await ensureTimeStream(jsm, prefix, options);
  const js = jsm.jetstream();
  const stream = timeStreamName(prefix);
  const subject = tickSubject(prefix);
  const encoder = new TextEncoder();
  const onError = options.onError ?? (() => {});

  return {
    async publish(second) {
      const ack = await js.publish(subject, encoder.encode(JSON.stringify({ second })), {
        msgID: String(second),
        timeout: 2_000,
      });
      return { duplicate: ack.duplicate };
    },

    consume(handler) {
      let stopped = false;
      let messages: ConsumerMessages | undefined;
      let current: AbortController | undefined;
      let wakeUp: (() => void) | undefined;

      const run = async () => {
        let failures = 0;
        while (!stopped) {
          try {
            const consumer = await js.consumers.get(stream, TICK_CONSUMER);
            if (stopped) return;
            messages = await consumer.consume({ max_messages: 16 });
            for await (const m of messages) {
              failures = 0;
              const second = parseTick(m.data);
              if (second === undefined) {
                m.term();
                continue;
              }
              const controller = new AbortController();
              current = controller;
              const tick: Tick = { second, pending: m.info.pending };
              try {
                await handler(tick, { working: () => m.working(), signal: controller.signal });
              } catch (error) {
                onError(error);
              }
              current = undefined;
              // Acknowledged even when stopped mid-pass: the next tick's pass, wherever it runs, finds the
              // same due sessions. (A nak would go back to this instance's abandoned pull request and sit
              // there for ack_wait, holding up every tick behind it.)
              m.ack();
              if (stopped) return;
            }
          } catch (error) {
            if (stopped) return;
            onError(error);
          }
          if (stopped) return;
          failures++;
          await Promise.race([
            delay(Math.min(250 * 2 ** failures, 5_000)),
            new Promise<void>((resolve) => {
              wakeUp = resolve;
            }),
          ]);
        }
      };

      const done = run();
      return {
        async stop() {
          stopped = true;
          current?.abort(new Error("tick consumer stopped"));
          wakeUp?.();
          await messages?.close().catch(() => {});
          await done;
        },
      };
    },
  };
}

function parseTick(data: Uint8Array): number | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(data)) as { second?: unknown };
    return Number.isSafeInteger(value.second) ? (value.second as number) : undefined;
  } catch {
    return undefined;
  }
}
