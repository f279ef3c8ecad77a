import type { z } from "zod";
import type { DomainEvent, EventMetadata, RecordedEvent, StreamName } from "../../domain/events.ts";
import {
  hasUnstorableJsonEscape,
  isStorableText,
  UNSTORABLE_TEXT_MESSAGE,
} from "../../domain/storable-text.ts";
import { CURRENT_EVENT_VERSION, eventMetadataSchema, eventSchemas } from "./event-schemas.ts";
import { compileFastCheck, type FastCheck } from "./fast-check.ts";

/**
 * The wire form of an event: UTF-8 JSON `{type, version, data, metadata}`. Both event-log adapters go
 * through this codec, so they accept and refuse exactly the same things. Writing validates too: an
 * invalid event that reached the log would stop every follower that meets it.
 *
 * Both directions first try a predicate compiled from the same zod schemas (fast-check.ts) that only
 * says yes when zod would accept the value and return it unchanged; anything else (an invalid value, an
 * unknown key to strip) goes through zod itself, which decides and reports the issues.
 *
 * A new SessionCreated must also hold only text Postgres can store (see storableSessionCreated). Decoding
 * never asks: an event already in the log is read whatever it holds.
 */

export type DecodedEvent = { event: DomainEvent; metadata: EventMetadata };

/** An event as stored, before upcasting: any type, any version, unvalidated data. */
export type RawEvent = { type: string; version: number; data: unknown };

/** Rewrites one older payload shape into the next version. Metadata is given for reference only. */
export type Upcaster = (event: RawEvent, metadata: unknown) => RawEvent;

export interface UpcasterRegistry {
  /** Registers the upcaster of `type` at `fromVersion`; returns a function that removes it again. */
  register(type: string, fromVersion: number, upcaster: Upcaster): () => void;
  lookup(type: string, version: number): Upcaster | undefined;
}

export type EventDecodeFailure =
  | "malformed_json"
  | "invalid_envelope"
  | "unknown_type"
  | "upcast_failed"
  | "invalid_payload";

export class EventDecodeError extends Error {
  readonly reason: EventDecodeFailure;
  readonly eventType: string | undefined;
  readonly eventVersion: number | undefined;
  readonly issues: readonly z.core.$ZodIssue[];

  constructor(
    reason: EventDecodeFailure,
    message: string,
    details: { type?: string; version?: number; issues?: readonly z.core.$ZodIssue[]; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "EventDecodeError";
    this.reason = reason;
    this.eventType = details.type;
    this.eventVersion = details.version;
    this.issues = details.issues ?? [];
  }
}

export class EventEncodeError extends Error {
  readonly eventType: string;
  readonly issues: readonly z.core.$ZodIssue[];

  constructor(eventType: string, issues: readonly z.core.$ZodIssue[]) {
    super(`Refusing to write an invalid ${eventType}: ${summarize(issues)}`);
    this.name = "EventEncodeError";
    this.eventType = eventType;
    this.issues = issues;
  }
}

export function createUpcasterRegistry(): UpcasterRegistry {
  const upcasters = new Map<string, Upcaster>();
  return {
    register(type, fromVersion, upcaster) {
      const key = `${type}@${fromVersion}`;
      if (upcasters.has(key)) throw new Error(`An upcaster for ${key} is already registered`);
      upcasters.set(key, upcaster);
      return () => {
        if (upcasters.get(key) === upcaster) upcasters.delete(key);
      };
    },
    lookup(type, version) {
      return upcasters.get(`${type}@${version}`);
    },
  };
}

/** The registry decodeEvent uses unless told otherwise. Upcasters of real old versions go here. */
export const defaultUpcasters: UpcasterRegistry = createUpcasterRegistry();

type Envelope = DomainEvent & { metadata: EventMetadata };

// Keyed by type: after upcasting, an event is validated against its type's current schema.
const envelopeSchemas = new Map<string, z.ZodType<Envelope>>();
const envelopeChecks = new Map<string, FastCheck>();
for (const schema of Object.values(eventSchemas)) {
  const envelope = schema.extend({ metadata: eventMetadataSchema });
  envelopeSchemas.set(schema.shape.type.value, envelope);
  const check = compileFastCheck(envelope);
  if (check !== undefined) envelopeChecks.set(schema.shape.type.value, check);
}

/** Event types whose envelope has a compiled fast check (tests assert it is every type). */
export const fastCheckedEventTypes: ReadonlySet<string> = new Set(envelopeChecks.keys());

const decoder = new TextDecoder("utf-8", { fatal: true });
// More steps than versions will ever exist; a registry that cycles fails instead of hanging.
const MAX_UPCAST_STEPS = 32;

export function encodeEvent(event: DomainEvent, metadata: EventMetadata): Uint8Array {
  const envelope = { type: event.type, version: event.version, data: event.data, metadata } as Envelope;
  if (envelopeChecks.get(event.type)?.(envelope) === true) {
    return storableSessionCreated(envelope, JSON.stringify(envelope));
  }
  const schema = envelopeSchemas.get(event.type);
  if (schema === undefined) throw new EventEncodeError(String(event.type), []);
  const parsed = schema.safeParse(envelope);
  if (!parsed.success) throw new EventEncodeError(event.type, parsed.error.issues);
  return storableSessionCreated(parsed.data, JSON.stringify(parsed.data));
}

/**
 * `json` as bytes, unless it is a SessionCreated holding text Postgres cannot store (NUL, an unpaired
 * surrogate): the edge refuses such text, so one reaching here is a writer's bug, refused before it
 * reaches the log. The projections would cope (they store U+FFFD instead, storable-text.ts), but a user
 * id stored that way is not the user's id: per-user queries of the read model (lists, the session limit,
 * revoke-all's fan-out) would miss the session. Only SessionCreated is refused: it is where a session's
 * text enters the log, while the events that follow copy ids from it — refusing those would leave an
 * existing session (from before the edge refused such text) impossible to end, renew or expire.
 * Costs one `includes` over the JSON (~0.02 µs per SessionCreated); only a hit walks the value.
 */
function storableSessionCreated(envelope: Envelope, json: string): Uint8Array {
  if (envelope.type === "SessionCreated" && hasUnstorableJsonEscape(json)) {
    throw new EventEncodeError(envelope.type, unstorableTextIssues(envelope));
  }
  // Buffer.from: half the cost of TextEncoder.encode for these sizes (a slice of a pooled allocation).
  return Buffer.from(json);
}

/** Where the value holds unstorable text (strings and object keys), as zod-style issues (up to 5). */
function unstorableTextIssues(value: unknown): z.core.$ZodIssue[] {
  const issues: z.core.$ZodIssue[] = [];
  const pending: Array<[unknown, PropertyKey[]]> = [[value, []]];
  while (pending.length > 0 && issues.length < 5) {
    const [item, path] = pending.pop() as [unknown, PropertyKey[]];
    if (typeof item === "string") {
      if (!isStorableText(item)) issues.push({ code: "custom", path, message: UNSTORABLE_TEXT_MESSAGE });
    } else if (Array.isArray(item)) {
      for (let index = 0; index < item.length; index++) pending.push([item[index], [...path, index]]);
    } else if (typeof item === "object" && item !== null) {
      for (const [key, member] of Object.entries(item)) {
        // The path names the key's place, never the key itself (it is the unstorable text).
        if (!isStorableText(key))
          issues.push({ code: "custom", path, message: `a key ${UNSTORABLE_TEXT_MESSAGE}` });
        pending.push([member, [...path, key]]);
      }
    }
  }
  return issues;
}

export function decodeEvent(bytes: Uint8Array, upcasters: UpcasterRegistry = defaultUpcasters): DecodedEvent {
  const { type, version, data, metadata } = decodeEnvelope(bytes, upcasters);
  return { event: { type, version, data } as DomainEvent, metadata };
}

/** The validated current-version envelope of a stored event (the parsed JSON itself when it is exact). */
function decodeEnvelope(bytes: Uint8Array, upcasters: UpcasterRegistry): Envelope {
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw new EventDecodeError("malformed_json", "Event payload is not UTF-8 JSON", { cause: error });
  }
  if (!isEnvelope(raw)) {
    throw new EventDecodeError(
      "invalid_envelope",
      "Event payload lacks a string type and an integer version",
    );
  }
  const metadata = raw.metadata;
  // The parsed JSON stands for itself until an upcaster rewrites it (the common case: no copy at all).
  let current: RawEvent = raw;
  let upcast = false;
  for (let step = 0; ; step++) {
    const upcaster = upcasters.lookup(current.type, current.version);
    if (upcaster === undefined) break;
    if (step === MAX_UPCAST_STEPS) {
      throw new EventDecodeError("upcast_failed", `Upcasting ${raw.type}@${raw.version} does not terminate`, {
        type: raw.type,
        version: raw.version,
      });
    }
    const from = upcast ? current : { type: raw.type, version: raw.version, data: raw.data };
    current = applyUpcaster(upcaster, from, metadata);
    upcast = true;
  }

  const schema = envelopeSchemas.get(current.type);
  if (schema === undefined) {
    throw new EventDecodeError("unknown_type", `Unknown event type ${current.type}@${current.version}`, {
      type: current.type,
      version: current.version,
    });
  }
  const candidate = upcast ? { ...current, metadata } : raw;
  if (envelopeChecks.get(current.type)?.(candidate) === true) return candidate as Envelope;
  const parsed = schema.safeParse(candidate);
  if (!parsed.success) {
    const where = `${current.type}@${current.version}`;
    const expected =
      current.version === CURRENT_EVENT_VERSION ? "" : ` (no upcaster to v${CURRENT_EVENT_VERSION})`;
    throw new EventDecodeError(
      "invalid_payload",
      `Invalid ${where}${expected}: ${summarize(parsed.error.issues)}`,
      {
        type: current.type,
        version: current.version,
        issues: parsed.error.issues,
      },
    );
  }
  return parsed.data;
}

function applyUpcaster(upcaster: Upcaster, from: RawEvent, metadata: unknown): RawEvent {
  let next: RawEvent;
  try {
    next = upcaster(from, metadata);
  } catch (error) {
    throw new EventDecodeError("upcast_failed", `Upcaster of ${from.type}@${from.version} failed`, {
      type: from.type,
      version: from.version,
      cause: error,
    });
  }
  // A version that does not move forward would loop or silently re-apply the same rewrite.
  if (!Number.isInteger(next.version) || next.version <= from.version) {
    throw new EventDecodeError(
      "upcast_failed",
      `Upcaster of ${from.type}@${from.version} returned version ${String(next.version)}`,
      { type: from.type, version: from.version },
    );
  }
  return next;
}

function isEnvelope(value: unknown): value is RawEvent & { metadata: unknown } {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return typeof candidate.type === "string" && Number.isInteger(candidate.version);
}

// Paths and messages only: zod leaves the offending values out, so no token hash reaches a log line.
function summarize(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`)
    .join("; ");
}

/** Decodes a stored event and places it in the log. */
export function decodeRecordedEvent(
  bytes: Uint8Array,
  stream: StreamName,
  position: number,
  traceparent: string | undefined,
  upcasters: UpcasterRegistry = defaultUpcasters,
): RecordedEvent {
  const { type, version, data, metadata } = decodeEnvelope(bytes, upcasters);
  const recorded = { type, version, data, metadata, stream, position } as RecordedEvent;
  if (traceparent !== undefined) recorded.traceparent = traceparent;
  return recorded;
}
