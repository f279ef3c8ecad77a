import type { StreamName } from "../../domain/events.ts";

/**
 * Subject naming of the event log. A session stream is `<prefix>.evt.session.<sessionId>`; a user stream
 * is `<prefix>.evt.user.<base64url(userId)>`, so user ids holding `.`, `*`, `>` or spaces cannot change
 * the subject's shape. The JetStream stream holding all of them is `<PREFIX>_EVENTS`.
 */

export type EventSubjects = {
  readonly prefix: string;
  /** `<PREFIX>_EVENTS` */
  readonly streamName: string;
  /** `<prefix>.evt.>`: every event subject. */
  readonly all: string;
  subjectFor(stream: StreamName): string;
  /** The stream a subject belongs to, or undefined if it is not an event subject of this prefix. */
  parse(subject: string): StreamName | undefined;
};

// A prefix becomes part of a stream name and of subjects: no dots, wildcards or spaces.
const PREFIX_PATTERN = /^[A-Za-z0-9_-]+$/;
// Session ids are UUIDv7 in practice; anything else that is a single safe subject token is accepted.
const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]+$/;
const USER_KEY_PATTERN = /^[A-Za-z0-9_-]+$/;

export function isValidPrefix(prefix: string): boolean {
  return PREFIX_PATTERN.test(prefix);
}

export function eventStreamName(prefix: string): string {
  assertPrefix(prefix);
  return `${prefix.toUpperCase()}_EVENTS`;
}

// A lone surrogate would be replaced while encoding to UTF-8, so the id would not come back as written.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function userKey(userId: string): string {
  if (userId.length === 0) throw new Error("A user id must not be empty");
  if (LONE_SURROGATE.test(userId)) throw new Error("A user id must be well-formed Unicode");
  return Buffer.from(userId, "utf8").toString("base64url");
}

export function createEventSubjects(prefix: string): EventSubjects {
  assertPrefix(prefix);
  const sessionPrefix = `${prefix}.evt.session.`;
  const userPrefix = `${prefix}.evt.user.`;
  return {
    prefix,
    streamName: eventStreamName(prefix),
    all: `${prefix}.evt.>`,
    subjectFor(stream) {
      switch (stream.category) {
        case "session":
          if (!SESSION_ID_PATTERN.test(stream.id)) {
            throw new Error(`Session id ${JSON.stringify(stream.id)} cannot be a subject token`);
          }
          return sessionPrefix + stream.id;
        case "user":
          return userPrefix + userKey(stream.id);
        default: {
          const unknown: never = stream;
          throw new Error(`Unknown stream category ${JSON.stringify(unknown)}`);
        }
      }
    },
    parse(subject) {
      if (subject.startsWith(sessionPrefix)) {
        const id = subject.slice(sessionPrefix.length);
        return SESSION_ID_PATTERN.test(id) ? { category: "session", id } : undefined;
      }
      if (subject.startsWith(userPrefix)) {
        const key = subject.slice(userPrefix.length);
        if (!USER_KEY_PATTERN.test(key)) return undefined;
        const id = Buffer.from(key, "base64url").toString("utf8");
        // Rejects keys that are not canonical base64url of UTF-8 (they would not round-trip).
        return id.length > 0 && userKey(id) === key ? { category: "user", id } : undefined;
      }
      return undefined;
    },
  };
}

function assertPrefix(prefix: string): void {
  if (!isValidPrefix(prefix)) {
    throw new Error(`Invalid prefix ${JSON.stringify(prefix)}: use letters, digits, "_" or "-"`);
  }
}
