import {
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamInfo,
  type StreamUpdateConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { createEventSubjects } from "./subjects.ts";

/**
 * The event stream: the log itself. Nothing in it is ever deleted or purged (every event is an audit
 * record), there are no limits, and the duplicate window is what makes retried appends idempotent.
 */

export type EventStreamOptions = {
  /** 1 locally, 3 in a cluster. */
  replicas: number;
  /** How long a Nats-Msg-Id is remembered. At least 2 minutes by default. */
  duplicateWindowMs?: number | undefined;
};

export const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60_000;

const STREAM_NAME_IN_USE = 10058;

export function eventStreamConfig(prefix: string, options: EventStreamOptions): Partial<StreamUpdateConfig> {
  const duplicateWindowMs = options.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
  if (!Number.isInteger(options.replicas) || options.replicas < 1) {
    throw new Error(`Event stream replicas must be a positive integer, got ${options.replicas}`);
  }
  if (!(duplicateWindowMs > 0)) throw new Error("The duplicate window must be positive");
  return {
    subjects: [createEventSubjects(prefix).all],
    discard: DiscardPolicy.Old,
    deny_delete: true,
    deny_purge: true,
    allow_direct: true,
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: options.replicas,
    max_msgs: -1,
    max_bytes: -1,
    max_age: 0,
    max_msgs_per_subject: -1,
    max_msg_size: -1,
    allow_rollup_hdrs: false,
  };
}

/** Creates the event stream, or brings an existing one to this configuration. Safe to run on every start. */
export async function ensureEventStream(
  jsm: JetStreamManager,
  prefix: string,
  options: EventStreamOptions,
): Promise<StreamInfo> {
  const name = createEventSubjects(prefix).streamName;
  const config = eventStreamConfig(prefix, options);
  const existing = await streamInfo(jsm, name);
  if (existing === undefined) {
    try {
      return await jsm.streams.add({
        ...config,
        name,
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
      });
    } catch (error) {
      // Another instance created it first (with a different config, else the create would have succeeded).
      if (!(error instanceof JetStreamApiError && error.code === STREAM_NAME_IN_USE)) throw error;
      return jsm.streams.update(name, config);
    }
  }
  if (existing.config.storage !== StorageType.File || existing.config.retention !== RetentionPolicy.Limits) {
    throw new Error(
      `Stream ${name} exists with ${existing.config.storage} storage and ${existing.config.retention} retention; ` +
        "the event log needs file storage and limits retention, which cannot be changed in place",
    );
  }
  return needsUpdate(existing, config) ? jsm.streams.update(name, config) : existing;
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === 10059 /* stream not found */) return undefined;
    throw error;
  }
}

function needsUpdate(info: StreamInfo, wanted: Partial<StreamUpdateConfig>): boolean {
  const current = info.config as unknown as Record<string, unknown>;
  return Object.entries(wanted).some(
    ([key, value]) => JSON.stringify(current[key]) !== JSON.stringify(value),
  );
}
