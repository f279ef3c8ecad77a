import type { DomainEvent, EventMetadata, RecordedEvent, StreamName } from "./events.ts";

/** Time comes from outside so deciders and tests control it. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

export interface IdGenerator {
  /** A new UUIDv7: public, time-ordered. */
  uuidv7(): string;
}

export interface SecretGenerator {
  /** 32 random bytes, base64url, for a bearer token. */
  newSecret(): string;
}

export type AppendOptions = {
  /**
   * Position of the last event of this stream as the caller saw it; 0 means the stream must be empty.
   * (JetStream: Nats-Expected-Last-Subject-Sequence.)
   */
  expectedVersion: number;
  /** Idempotency: a second append with the same id inside the dedupe window returns the first's result. */
  messageId: string;
  /** W3C trace context to carry with the event. */
  traceparent?: string | undefined;
};

export type AppendResult = { position: number; duplicate: boolean };

export type StreamRead = {
  events: RecordedEvent[];
  /** Position of the stream's last event, 0 when the stream is empty. */
  version: number;
};

export class VersionConflictError extends Error {
  readonly expected: number;
  readonly actual: number | undefined;

  constructor(expected: number, actual: number | undefined) {
    super(`Stream version conflict: expected ${expected}, found ${actual ?? "unknown"}`);
    this.name = "VersionConflictError";
    this.expected = expected;
    this.actual = actual;
  }
}

export type FollowOptions = {
  /** First position to deliver (inclusive). 1 replays everything. */
  from: number;
  /** Most events handed to the handler at once. */
  batchSize: number;
};

/** A running subscription; `stop` resolves once the handler is no longer called. */
export interface Follower {
  stop(): Promise<void>;
  /** Resolves with the error that ended the subscription, if it ended on its own. */
  readonly done: Promise<void>;
}

/**
 * The event log. The only source of truth; everything else is a projection of it. Two adapters exist —
 * JetStream and in-memory — and one contract test suite runs against both.
 */
export interface EventLog {
  append(
    stream: StreamName,
    event: DomainEvent,
    metadata: EventMetadata,
    options: AppendOptions,
  ): Promise<AppendResult>;
  /** Every event of one stream, in order, with its version. */
  readStream(stream: StreamName): Promise<StreamRead>;
  /** The event at a global position, if it is one of ours. */
  readAt(position: number): Promise<RecordedEvent | undefined>;
  /** Position of the newest event in the whole log, 0 when empty. */
  lastPosition(): Promise<number>;
  /**
   * Delivers every event from `options.from` in order, in batches, then keeps following new ones. The
   * handler is awaited before the next batch; if it throws, the follower stops and `done` rejects.
   */
  follow(options: FollowOptions, handler: (batch: RecordedEvent[]) => Promise<void>): Follower;
  close(): Promise<void>;
}

/** A time-limited claim that one instance holds, so only one runner of a projection is active. */
export interface LeaseManager {
  /** Runs `work` while this instance holds `name`; stops it (via the signal) when the lease is lost. */
  hold(name: string, work: (signal: AbortSignal) => Promise<void>): LeaseHandle;
}

export interface LeaseHandle {
  readonly isHolder: () => boolean;
  release(): Promise<void>;
}

/** Emits the whole seconds of a clock as they begin: one call per epoch second, never going back. */
export interface TickSource {
  /** Calls `onTick(epochSecond)` for each new second until the returned stop is called. */
  start(onTick: (epochSecond: number) => void): () => void;
}

/** A tick as the time stream hands it out; `pending` counts newer ticks already waiting behind it. */
export type Tick = { second: number; pending: number };

/**
 * The time stream: one tick per epoch second however many instances publish it (the second is the
 * message id), and each tick handed to exactly one consumer across all instances, one at a time.
 */
export interface TickLog {
  publish(epochSecond: number): Promise<{ duplicate: boolean }>;
  /**
   * Hands ticks to `handler` until stopped; a tick is acknowledged when the handler settles (one that
   * never settles, because its instance died, goes to another instance after a while). `working` says
   * the tick is still being handled; `signal` aborts when this consumer stops.
   */
  consume(handler: (tick: Tick, control: { working(): void; signal: AbortSignal }) => Promise<void>): {
    stop(): Promise<void>;
  };
}
