import {
  type Consumer,
  type ConsumerMessages,
  DeliverPolicy,
  type JsMsg,
  jetstream,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { headerBlockMentions } from "../jetstream/header-peek.ts";

/**
 * Follows a KV bucket with an ordered consumer: first the current value of every key, then every change,
 * in revision order. Deletes and purges are skipped (validation entries are never deleted; they end by
 * status). The ordered consumer recreates itself after a reconnect (e.g. a NATS restart) from the last
 * revision it saw; if it gives up, this watch starts a new one from the same place, so no update between
 * the two is missed. Resolves once every value present at the start has been handed to `onValue`.
 */

export type BucketWatch = { stop(): Promise<void> };

const KV_OPERATION = "KV-Operation";
const KV_OPERATION_BYTES = new TextEncoder().encode(KV_OPERATION);
const MAX_RESTART_DELAY_MS = 5_000;

export async function watchKvBucket(
  nc: NatsConnection,
  bucket: string,
  /** `revision` is the value's revision (its sequence in the bucket's stream), what a CAS update expects. */
  onValue: (key: string, data: Uint8Array, revision: number) => void,
): Promise<BucketWatch> {
  const js = jetstream(nc);
  const stream = `KV_${bucket}`;
  const subjectPrefix = `$KV.${bucket}.`;
  const info = await (await js.jetstreamManager()).streams.info(stream);
  // Everything up to this sequence existed before the watch: delivering past it means the snapshot is in.
  const snapshotLastSeq = info.state.messages > 0 ? info.state.last_seq : 0;

  let lastSeq = 0;
  let stopped = false;
  let failures = 0;
  let consumer: Consumer | undefined;
  let messages: ConsumerMessages | undefined;
  let restartTimer: NodeJS.Timeout | undefined;

  let initialDone = false;
  let resolveInitial!: () => void;
  let rejectInitial!: (error: Error) => void;
  const initial = new Promise<void>((resolve, reject) => {
    resolveInitial = resolve;
    rejectInitial = reject;
  });
  const finishInitial = () => {
    if (initialDone) return;
    initialDone = true;
    resolveInitial();
  };
  if (snapshotLastSeq === 0) finishInitial();

  const onMessage = (m: JsMsg) => {
    lastSeq = m.seq;
    failures = 0;
    // Puts carry no KV-Operation header (deletes and purges do): look for its name in the raw header
    // block before letting the client decode every header of every update.
    const operation =
      headerBlockMentions(m, KV_OPERATION_BYTES) === false ? undefined : m.headers?.get(KV_OPERATION);
    if (operation !== "DEL" && operation !== "PURGE" && m.subject.startsWith(subjectPrefix)) {
      // A listener that throws must not end the watch (the consumer would stop on a thrown callback).
      try {
        onValue(m.subject.slice(subjectPrefix.length), m.data, m.seq);
      } catch {}
    }
    if (!initialDone && (m.info.pending === 0 || m.seq >= snapshotLastSeq)) finishInitial();
  };

  const start = async () => {
    const filter = `${subjectPrefix}>`;
    const created = await js.consumers.get(
      stream,
      lastSeq === 0
        ? { filter_subjects: filter, deliver_policy: DeliverPolicy.LastPerSubject }
        : {
            filter_subjects: filter,
            deliver_policy: DeliverPolicy.StartSequence,
            opt_start_seq: lastSeq + 1,
          },
    );
    if (stopped) {
      await created.delete().catch(() => false);
      return;
    }
    consumer = created;
    if (!initialDone && (await created.info(true)).num_pending === 0) finishInitial();
    const iterator = await created.consume({ max_messages: 1024, callback: onMessage });
    messages = iterator;
    iterator.closed().then(afterClose, afterClose);
  };

  const afterClose = () => {
    if (stopped) return;
    if (nc.isClosed()) {
      if (!initialDone) rejectInitial(new Error(`watch of ${bucket}: connection closed`));
      return;
    }
    const delay = Math.min(MAX_RESTART_DELAY_MS, 250 * 2 ** failures);
    failures++;
    restartTimer = setTimeout(() => {
      start().catch(afterClose);
    }, delay);
  };

  await start();
  await initial;

  return {
    async stop() {
      stopped = true;
      clearTimeout(restartTimer);
      await messages?.close();
      // The ordered consumer would expire on its own; deleting it just tidies up at once.
      await consumer?.delete().catch(() => false);
    },
  };
}
