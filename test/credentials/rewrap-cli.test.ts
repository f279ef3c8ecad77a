import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, expect, it, vi } from "vitest";
import { createKvCredentialKeyStore } from "../../src/adapters/nats-kv/credential-key-store.ts";
import { keyIdOf, newDataKey, unwrapDataKey, wrapDataKey } from "../../src/app/credential-crypto.ts";
import type { CredentialKeyStore } from "../../src/app/credential-vault.ts";
import { runCli } from "../../src/cli.ts";
import { newSessionId } from "../contract/event-fixtures.ts";
import {
  connectNats,
  NATS_URL,
  POSTGRES_ADMIN_URL,
  removeNatsPrefix,
  uniquePrefix,
} from "../support/services.ts";

/** `tessera credentials rewrap` on a real NATS prefix: the servers' environment, one JSON line out. */

let nc: NatsConnection;
let prefix: string;
let keys: CredentialKeyStore;
const oldKey = randomBytes(32);
const newKey = randomBytes(32);
const saved = { ...process.env };
const stdout: string[] = [];
const stderr: string[] = [];

beforeAll(async () => {
  nc = await connectNats();
  prefix = uniquePrefix("rwc");
  keys = await createKvCredentialKeyStore({ nc, prefix });
});

afterEach(() => {
  process.env = { ...saved };
  vi.restoreAllMocks();
  stdout.length = 0;
  stderr.length = 0;
});

afterAll(async () => {
  await removeNatsPrefix(nc, prefix);
  await nc.close();
});

async function cli(env: Record<string, string | undefined>, ...argv: string[]) {
  // DATABASE_URL only because the servers' environment has it; the command never opens the database.
  process.env = { ...saved, NATS_URL, DATABASE_URL: POSTGRES_ADMIN_URL, TESSERA_PREFIX: prefix, ...env };
  vi.spyOn(console, "log").mockImplementation((line: string) => stdout.push(line));
  vi.spyOn(console, "error").mockImplementation((line: string) => stderr.push(line));
  return runCli(["credentials", ...argv]);
}

const rotating = {
  TESSERA_CREDENTIALS_KEY: newKey.toString("base64"),
  TESSERA_CREDENTIALS_PREVIOUS_KEYS: oldKey.toString("base64"),
};

it("re-wraps what the previous key wrapped, counts the current ones, reports the unreadable ones and keeps them", async () => {
  const underOld = [newSessionId(), newSessionId()];
  const dataKeys = underOld.map(() => newDataKey());
  for (const [i, id] of underOld.entries())
    await keys.put(id, wrapDataKey(oldKey, id, dataKeys[i] as Buffer, 1_000));
  const underNew = newSessionId();
  await keys.put(underNew, wrapDataKey(newKey, underNew, newDataKey(), 1_000));
  const lost = newSessionId();
  await keys.put(lost, wrapDataKey(randomBytes(32), lost, newDataKey(), 1_000));

  expect(await cli(rotating, "rewrap"), stderr.join("\n")).toBe(0);
  expect(JSON.parse(stdout.at(-1) ?? "")).toEqual({
    bucket: `${prefix}_credential_keys`,
    rewrapped: 2,
    current: 1,
    unreadable: 1,
    changed: 0,
    under_previous_key: 0,
    unreadable_session_ids: [lost],
  });
  expect(stderr.join("\n")).toContain("1 key(s) open under no configured master key: left in place");
  for (const [i, id] of underOld.entries()) {
    const wrapped = await keys.get(id);
    expect(wrapped?.kid).toBe(keyIdOf(newKey));
    expect(
      unwrapDataKey(newKey, id, wrapped as NonNullable<typeof wrapped>).equals(dataKeys[i] as Buffer),
    ).toBe(true);
  }
  expect(await keys.get(lost)).toBeDefined();

  // Done: a second run re-wraps nothing, and the old key may go (without it, nothing under it is left).
  expect(await cli({ TESSERA_CREDENTIALS_KEY: newKey.toString("base64") }, "rewrap")).toBe(0);
  expect(JSON.parse(stdout.at(-1) ?? "")).toMatchObject({ rewrapped: 0, current: 3, unreadable: 1 });
});

it("refuses a bad previous key by its position without echoing it, and needs NATS and the current key", async () => {
  const short = randomBytes(16).toString("base64");
  expect(
    await cli(
      { ...rotating, TESSERA_CREDENTIALS_PREVIOUS_KEYS: `${oldKey.toString("base64")},${short}` },
      "rewrap",
    ),
  ).toBe(78);
  expect(stderr.join("\n")).toContain("TESSERA_CREDENTIALS_PREVIOUS_KEYS: key 2 of 2");
  expect(stderr.join("\n")).not.toContain(short);
  expect(stderr.join("\n")).not.toContain(oldKey.toString("base64"));

  expect(await cli({ ...rotating, NATS_URL: undefined, DATABASE_URL: undefined }, "rewrap")).toBe(78);
  expect(stderr.at(-1)).toContain("NATS_URL");
  expect(await cli({ TESSERA_CREDENTIALS_KEY: undefined }, "rewrap")).toBe(78);
  expect(stderr.at(-1)).toContain("TESSERA_CREDENTIALS_KEY");
  expect(await cli(rotating, "frobnicate")).toBe(2);
  expect(stdout).toEqual([]);
});
