import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  formatToken,
  hashesEqual,
  hashSecret,
  isUuid,
  looksLikeToken,
  parseToken,
  type TokenKind,
} from "../../src/domain/tokens.ts";

const SESSION_ID = "01943a5e-7c00-7a3b-8c1d-2e3f4a5b6c7d";
const SECRET = randomBytes(32).toString("base64url");

const uuidArb = fc.uuid().map((uuid) => uuid.toLowerCase());
const secretArb = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((bytes) => Buffer.from(bytes).toString("base64url"));
const kindArb = fc.constantFrom<TokenKind>("session", "refresh");

describe("formatToken / parseToken", () => {
  it("formats tss_ and tsr_ tokens", () => {
    expect(formatToken("session", SESSION_ID, SECRET)).toBe(`tss_${SESSION_ID}_${SECRET}`);
    expect(formatToken("refresh", SESSION_ID, SECRET)).toBe(`tsr_${SESSION_ID}_${SECRET}`);
  });

  it("round-trips any session id and 32-byte secret", () => {
    fc.assert(
      fc.property(kindArb, uuidArb, secretArb, (kind, sessionId, secret) => {
        expect(secret).toHaveLength(43);
        expect(parseToken(formatToken(kind, sessionId, secret), kind)).toEqual({ kind, sessionId, secret });
      }),
    );
  });

  it("refuses a token of the other kind", () => {
    expect(parseToken(formatToken("refresh", SESSION_ID, SECRET), "session")).toBeUndefined();
    expect(parseToken(formatToken("session", SESSION_ID, SECRET), "refresh")).toBeUndefined();
  });

  const valid = formatToken("session", SESSION_ID, SECRET);
  it.each([
    ["empty", ""],
    ["one character short", valid.slice(0, -1)],
    ["one character long", `${valid}A`],
    ["unknown prefix", `tsx_${valid.slice(4)}`],
    ["upper-case prefix", `TSS_${valid.slice(4)}`],
    ["wrong separator", `tss_${SESSION_ID}.${SECRET}`],
    ["upper-case uuid", `tss_${SESSION_ID.toUpperCase()}_${SECRET}`],
    ["uuid without dashes, padded", `tss_${SESSION_ID.replaceAll("-", "")}0000_${SECRET}`],
    ["non-hex uuid", `tss_${SESSION_ID.replace("7", "g")}_${SECRET}`],
    ["base64 '+' in the secret", `tss_${SESSION_ID}_+${SECRET.slice(1)}`],
    ["base64 '/' in the secret", `tss_${SESSION_ID}_/${SECRET.slice(1)}`],
    ["padding in the secret", `tss_${SESSION_ID}_${SECRET.slice(0, -1)}=`],
    ["non-ASCII in the secret", `tss_${SESSION_ID}_é${SECRET.slice(1)}`],
    ["whitespace around it", ` ${valid.slice(1)}`],
  ])("refuses a token with %s", (_, token) => {
    expect(parseToken(token, "session")).toBeUndefined();
  });

  it("refuses every single-character corruption outside the secret's alphabet", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: valid.length - 1 }),
        fc.constantFrom(" ", ".", "+", "/", "=", "G", "Z", "\n"),
        (index, replacement) => {
          fc.pre(index < 4 + 36 + 1 || !/[A-Za-z0-9_-]/.test(replacement));
          fc.pre(valid[index] !== replacement);
          const corrupted = valid.slice(0, index) + replacement + valid.slice(index + 1);
          expect(parseToken(corrupted, "session")).toBeUndefined();
        },
      ),
    );
  });
});

describe("looksLikeToken / isUuid", () => {
  it("recognises token prefixes only", () => {
    expect(looksLikeToken("tss_anything")).toBe(true);
    expect(looksLikeToken("tsr_anything")).toBe(true);
    expect(looksLikeToken("eyJhbGciOiJFZERTQSJ9.e30.sig")).toBe(false);
    expect(looksLikeToken("")).toBe(false);
  });

  it("accepts lower-case canonical uuids only", () => {
    expect(isUuid(SESSION_ID)).toBe(true);
    expect(isUuid(SESSION_ID.toUpperCase())).toBe(false);
    expect(isUuid(`${SESSION_ID}0`)).toBe(false);
    expect(isUuid("not-a-uuid")).toBe(false);
  });
});

describe("hashSecret / hashesEqual", () => {
  it("is base64url sha256 of the secret", () => {
    expect(hashSecret("abc")).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    expect(hashSecret(SECRET)).toHaveLength(43);
    expect(hashSecret(SECRET)).not.toContain(SECRET);
  });

  it("compares hashes by value", () => {
    const hash = hashSecret(SECRET);
    expect(hashesEqual(hash, hashSecret(SECRET))).toBe(true);
    expect(hashesEqual(hash, hashSecret(`${SECRET}x`))).toBe(false);
    expect(hashesEqual(hash, `${hash.slice(0, -1)}${hash.endsWith("A") ? "B" : "A"}`)).toBe(false);
  });

  it("is false, not an exception, for different lengths", () => {
    const hash = hashSecret(SECRET);
    expect(hashesEqual(hash, hash.slice(1))).toBe(false);
    expect(hashesEqual(hash, "")).toBe(false);
    expect(hashesEqual("", "")).toBe(true);
  });

  it("agrees with === for any pair of strings", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(hashesEqual(a, b)).toBe(a === b);
        expect(hashesEqual(a, a)).toBe(true);
      }),
    );
  });
});
