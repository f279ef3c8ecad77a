import { concurrencyConflict } from "../domain/errors.ts";
import type {
  DomainEvent,
  EventMetadata,
  RecordedActor,
  RecordedEvent,
  RecordedSource,
  StreamName,
} from "../domain/events.ts";
import {
  type AppendResult,
  type Clock,
  type EventLog,
  type IdGenerator,
  VersionConflictError,
} from "../domain/ports.ts";
import { createKeyedMutex } from "./keyed-mutex.ts";
import { inSpan } from "./tracing.ts";

/** Who asked, from where, and under which id: becomes the events' metadata. */
export type CommandContext = {
  /** Idempotency: the same id within the dedupe window appends at most once. */
  commandId: string;
  correlationId?: string | undefined;
  causationId?: string | undefined;
  actor: RecordedActor;
  /** What this version writes; a fan-out of a recorded event carries that event's source on. */
  source: RecordedSource;
  ip?: string | undefined;
  userAgent?: string | undefined;
  traceparent?: string | undefined;
};

export type Decider<State, Command, Event extends DomainEvent> = {
  decide(command: Command, state: State): Event[];
  evolve(state: State, event: Event): State;
  initialState(): State;
};

export type HandleResult<State> = {
  state: State;
  /** Events this call appended (empty for a no-op or a duplicate). */
  appended: RecordedEvent[];
  /** The stream's version after the call. */
  version: number;
  /** True when the command id had already been appended: nothing new was written. */
  duplicate: boolean;
  /** For a duplicate: the stream the original append went to (it may differ, e.g. a retried create). */
  originalStream: StreamName | undefined;
  /** For a duplicate: the event the original append wrote (a retry compares its request with it). */
  original?: RecordedEvent | undefined;
};

type Cached<State> = { state: State; version: number };

export type HandleOptions<Event extends DomainEvent = DomainEvent> = {
  /**
   * The stream is known not to exist yet (its id was generated for this command, e.g. a fresh UUIDv7):
   * decide on the initial state and append with expected version 0 without reading the log first. If it
   * does exist after all, the append meets a version conflict and the command re-reads and decides again
   * like any other conflict.
   */
  newStream?: boolean;
  /**
   * With nothing cached for the stream: the command decided on another view of it instead of a read —
   * one that holds, for the facts the decision depends on, the stream as of `version` (this instance's
   * validation entry). The event is appended with that expected version, so the log takes it only if
   * nothing was appended since, i.e. only if it was decided on the current state; meanwhile the stream is
   * read for the whole resulting state. `onAppended` runs as soon as the append is acknowledged, before
   * that read completes. A conflict or a duplicate falls back to the ordinary path (decide on the stream
   * as read, append, re-read and retry on conflict). Undefined: only the whole state can decide.
   */
  presumed?: ((now: number) => Presumed<Event> | undefined) | undefined;
};

export type Presumed<Event extends DomainEvent> = {
  /** The stream version the decision was made on. */
  version: number;
  event: Event;
  /**
   * The event is in the log: e.g. tell other instances now rather than after the state read. Best effort:
   * a failure here does not fail the command.
   */
  onAppended?: ((recorded: RecordedEvent) => Promise<void> | undefined) | undefined;
};

/** Told about appends and version conflicts, for metrics. */
export type CommandObserver = {
  appended(eventType: DomainEvent["type"]): void;
  conflict(category: StreamName["category"]): void;
};

const streamKey = (stream: StreamName) => `${stream.category}:${stream.id}`;

/**
 * Load → decide → append with the expected version → on conflict re-read and retry (bounded).
 *
 * Commands for one stream are serialised inside this process, so concurrent requests on one instance
 * never conflict with each other; conflicts only come from other instances. Recent states are cached so
 * a command costs one append, not a read plus an append; a stale cache entry is caught by the version
 * check like any other conflict.
 */
export function createCommandHandler<
  State,
  Command extends { now: number },
  Event extends DomainEvent,
>(deps: {
  log: EventLog;
  clock: Clock;
  ids: IdGenerator;
  decider: Decider<State, Command, Event>;
  maxAttempts?: number;
  cacheSize?: number;
  observer?: CommandObserver | undefined;
}) {
  const { log, clock, ids, decider } = deps;
  const maxAttempts = deps.maxAttempts ?? 20;
  const cacheSize = deps.cacheSize ?? 50_000;
  const cache = createStateCache<Cached<State>>(cacheSize);
  const mutex = createKeyedMutex();
  const remember = (stream: StreamName, value: Cached<State>) => cache.set(stream, value);

  async function load(stream: StreamName): Promise<Cached<State>> {
    const read = await log.readStream(stream);
    let state = decider.initialState();
    for (const event of read.events) state = decider.evolve(state, event as unknown as Event);
    return { state, version: read.version };
  }

  async function handleUnlocked(
    stream: StreamName,
    buildCommand: (now: number, state: State) => Command,
    context: CommandContext,
    options: HandleOptions<Event>,
  ): Promise<HandleResult<State>> {
    let current = cache.get(stream);
    if (current === undefined && options.presumed !== undefined) {
      const outcome = await appendPresumed(stream, options.presumed, context);
      if (outcome.result !== undefined) return outcome.result;
      current = outcome.read;
    }
    current ??=
      options.newStream === true ? { state: decider.initialState(), version: 0 } : await load(stream);
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const now = clock.now();
      const command = buildCommand(now, current.state);
      const events = decider.decide(command, current.state);
      if (events.length === 0) {
        remember(stream, current);
        return { ...current, appended: [], duplicate: false, originalStream: undefined };
      }
      try {
        const appended: RecordedEvent[] = [];
        let { state, version } = current;
        for (const [index, event] of events.entries()) {
          const metadata = eventMetadata(context, now, index, ids.uuidv7());
          const result = await log.append(stream, event, metadata, {
            expectedVersion: version,
            messageId: index === 0 ? context.commandId : `${context.commandId}:${index}`,
            traceparent: context.traceparent,
          });
          if (result.duplicate) return await resolveDuplicate(stream, result.position);
          version = result.position;
          state = decider.evolve(state, event);
          appended.push(recordedAt(event, metadata, stream, result.position));
          deps.observer?.appended(event.type);
        }
        remember(stream, { state, version });
        return { state, version, appended, duplicate: false, originalStream: undefined };
      } catch (error) {
        if (!(error instanceof VersionConflictError)) {
          cache.delete(stream);
          throw error;
        }
        deps.observer?.conflict(stream.category);
        current = await load(stream);
        await backoff(attempt);
      }
    }
    cache.delete(stream);
    throw concurrencyConflict(streamKey(stream), maxAttempts);
  }

  /**
   * The `presumed` path: one append at the presumed version while the stream is read. Returns the result,
   * or (on a conflict or a duplicate) the stream as read meanwhile for the ordinary path to decide on.
   */
  async function appendPresumed(
    stream: StreamName,
    presume: (now: number) => Presumed<Event> | undefined,
    context: CommandContext,
  ): Promise<{ result?: HandleResult<State>; read?: Cached<State> | undefined }> {
    const now = clock.now();
    const presumed = presume(now);
    if (presumed === undefined) return {};
    // The answer needs the whole state, which the presumption does not hold: read it alongside the append.
    // A failed read only costs the fallback: the ordinary path reads again.
    const reading = load(stream).catch(() => undefined);
    const metadata = eventMetadata(context, now, 0, ids.uuidv7());
    let appended: AppendResult;
    try {
      appended = await log.append(stream, presumed.event, metadata, {
        expectedVersion: presumed.version,
        messageId: context.commandId,
        traceparent: context.traceparent,
      });
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error;
      deps.observer?.conflict(stream.category);
      return { read: await reading };
    }
    if (appended.duplicate) {
      await reading;
      return { result: await resolveDuplicate(stream, appended.position) };
    }
    const recorded = recordedAt(presumed.event, metadata, stream, appended.position);
    deps.observer?.appended(presumed.event.type);
    let following: Promise<void> | undefined;
    try {
      following = presumed.onAppended?.(recorded)?.catch(() => {});
    } catch {
      // Best effort by contract: the event is in the log either way.
    }
    let read = await reading;
    if (read !== undefined && read.version === presumed.version) {
      // Read before the append landed: the state it decided on, plus the event.
      read = { state: decider.evolve(read.state, presumed.event), version: appended.position };
    } else if (read === undefined || read.version < appended.position) {
      read = await load(stream);
    }
    await following;
    remember(stream, read);
    return {
      result: { ...read, appended: [recorded], duplicate: false, originalStream: undefined },
    };
  }

  async function resolveDuplicate(stream: StreamName, position: number): Promise<HandleResult<State>> {
    const original = await log.readAt(position);
    const originalStream = original?.stream ?? stream;
    const reloaded = await load(originalStream);
    remember(originalStream, reloaded);
    return { ...reloaded, appended: [], duplicate: true, originalStream, original };
  }

  return {
    /**
     * Runs one command against one stream. `buildCommand` is called with the current time and state on
     * every attempt, so a retry decides again on fresh state.
     */
    handle(
      stream: StreamName,
      buildCommand: (now: number, state: State) => Command,
      context: CommandContext,
      options: HandleOptions<Event> = {},
    ): Promise<HandleResult<State>> {
      return inSpan(
        `command ${stream.category}`,
        context.traceparent,
        { "tessera.stream.category": stream.category, "tessera.source": context.source },
        (traceparent, span) =>
          mutex.run(streamKey(stream), async () => {
            const result = await handleUnlocked(stream, buildCommand, { ...context, traceparent }, options);
            span.setAttribute("tessera.events_appended", result.appended.length);
            span.setAttribute("tessera.duplicate", result.duplicate);
            return result;
          }),
      );
    },
    /**
     * State of a stream. The cache answers when it is known to be at least `atLeastVersion` (e.g. the
     * position the shared validation view has seen); without it, the log is read, so the answer is fresh.
     */
    async read(stream: StreamName, atLeastVersion?: number): Promise<Cached<State>> {
      const cached = cache.get(stream);
      if (cached && atLeastVersion !== undefined && cached.version >= atLeastVersion) return cached;
      const loaded = await load(stream);
      remember(stream, loaded);
      return loaded;
    },
    /**
     * The cached state when it is known to be at least `atLeastVersion`, else undefined — never reads
     * the log. For hot paths that can answer synchronously from the cache and fall back to `read`.
     */
    peek(stream: StreamName, atLeastVersion: number): Cached<State> | undefined {
      const cached = cache.get(stream);
      return cached !== undefined && cached.version >= atLeastVersion ? cached : undefined;
    },
    /** Drops a cached state, e.g. when another instance is known to have changed the stream. */
    forget(stream: StreamName) {
      cache.delete(stream);
    },
  };
}

/** The metadata of the `index`-th event a command appends (its message id is the command id, then `:index`). */
export function eventMetadata(
  context: CommandContext,
  now: number,
  index: number,
  eventId: string,
): EventMetadata {
  return {
    eventId,
    commandId: index === 0 ? context.commandId : `${context.commandId}:${index}`,
    correlationId: context.correlationId ?? context.commandId,
    causationId: context.causationId ?? context.commandId,
    occurredAt: new Date(now).toISOString(),
    actor: context.actor,
    source: context.source,
    ip: context.ip,
    userAgent: context.userAgent,
  };
}

export type CommandHandler<State, Command extends { now: number }, Event extends DomainEvent> = ReturnType<
  typeof createCommandHandler<State, Command, Event>
>;

/**
 * Recent states by stream, least recently written evicted first, at most `size` per category. Keyed by
 * category, then by the stream's id as given (no `category:id` string built per lookup: reads of the
 * cache sit on the validation path).
 */
function createStateCache<V>(size: number) {
  const byCategory = new Map<string, Map<string, V>>();
  return {
    get(stream: StreamName): V | undefined {
      return byCategory.get(stream.category)?.get(stream.id);
    },
    set(stream: StreamName, value: V) {
      let entries = byCategory.get(stream.category);
      if (!entries) {
        entries = new Map();
        byCategory.set(stream.category, entries);
      }
      entries.delete(stream.id);
      entries.set(stream.id, value);
      if (entries.size > size) {
        const oldest = entries.keys().next().value;
        if (oldest !== undefined) entries.delete(oldest);
      }
    },
    delete(stream: StreamName) {
      byCategory.get(stream.category)?.delete(stream.id);
    },
  };
}

function backoff(attempt: number): Promise<void> {
  // Jittered, growing wait so racing instances spread out instead of colliding again in lockstep.
  const ms = Math.min(50, 2 ** Math.min(attempt, 5)) * Math.random();
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An appended event as the log records it. */
function recordedAt(
  event: DomainEvent,
  metadata: EventMetadata,
  stream: StreamName,
  position: number,
): RecordedEvent {
  // Object.assign, not a spread: V8 (Node 20) adds the properties that follow a spread in a literal
  // through its slow path (~2 µs per event).
  return Object.assign({}, event, { metadata, stream, position }) as RecordedEvent;
}
