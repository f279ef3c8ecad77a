import { describe, expect, it } from "vitest";
import { createEventSubjects, eventStreamName, userKey } from "../../src/adapters/jetstream/subjects.ts";
import { sessionStream, userStream } from "../../src/domain/events.ts";

const subjects = createEventSubjects("tessera");
// A NATS subject token: no separators, wildcards or whitespace.
const SAFE_TOKEN = /^[A-Za-z0-9_-]+$/;

describe("event subjects", () => {
  it("names the stream and the subjects after the prefix", () => {
    expect(subjects.streamName).toBe("TESSERA_EVENTS");
    expect(eventStreamName("t-1")).toBe("T-1_EVENTS");
    expect(subjects.all).toBe("tessera.evt.>");
    const id = "0193c3b2-8a1f-7d2e-9c4b-5a6d7e8f9a0b";
    expect(subjects.subjectFor(sessionStream(id))).toBe(`tessera.evt.session.${id}`);
    expect(subjects.subjectFor(userStream("alice"))).toBe("tessera.evt.user.YWxpY2U");
  });

  it("maps awkward user ids to one safe token and back", () => {
    const ids = ["a.b", "a@b.c", "*", ">", "x y", " ", "a.*.>", "ünï/用户", "😀", "=+/"];
    const seen = new Set<string>();
    for (const id of ids) {
      const subject = subjects.subjectFor(userStream(id));
      const token = subject.slice("tessera.evt.user.".length);
      expect(token).toMatch(SAFE_TOKEN);
      expect(subject.split(".")).toHaveLength(4);
      expect(subjects.parse(subject)).toEqual({ category: "user", id });
      seen.add(subject);
    }
    expect(seen.size).toBe(ids.length);
  });

  it("parses only its own, canonical subjects", () => {
    expect(subjects.parse("other.evt.user.YWxpY2U")).toBeUndefined();
    expect(subjects.parse("tessera.evt.time.x")).toBeUndefined();
    expect(subjects.parse("tessera.evt.session.a.b")).toBeUndefined();
    expect(subjects.parse("tessera.evt.user.")).toBeUndefined();
    expect(subjects.parse("tessera.evt.user.YWxpY2U=")).toBeUndefined();
    // Decodes to invalid UTF-8, so it could not have been written by subjectFor.
    expect(subjects.parse(`tessera.evt.user.${Buffer.from([0xff]).toString("base64url")}`)).toBeUndefined();
  });

  it("refuses ids and prefixes that would break a subject", () => {
    expect(() => subjects.subjectFor(sessionStream("a.b"))).toThrow();
    expect(() => subjects.subjectFor(sessionStream("*"))).toThrow();
    expect(() => subjects.subjectFor(sessionStream(""))).toThrow();
    expect(() => userKey("")).toThrow();
    expect(() => userKey("\uD800")).toThrow(/well-formed/);
    expect(() => createEventSubjects("a.b")).toThrow();
    expect(() => createEventSubjects("")).toThrow();
    expect(() => createEventSubjects("a b")).toThrow();
  });
});
