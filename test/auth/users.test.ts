import { spawn } from "node:child_process";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { runUsersCommand } from "../../src/cli-users.ts";
import { ConfigError } from "../../src/config.ts";
import type { Tessera } from "../../src/main.ts";
import { NATS_URL, type TestDatabase } from "../support/services.ts";
import { type Pair, startEmbedded, startPair } from "../support/tessera.ts";
import { getSession, login, sessionStatus, tokenRequest } from "./helpers.ts";

/** The user directory (argon2id in Postgres), `tessera users`, and the embedded demo users. */
let database: TestDatabase;
let prefix: string;
let pair: Pair;
let a: Tessera;
let b: Tessera;
const env = { TESSERA_RATE_LIMIT_TOKEN_PER_IP: "0", TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: "0" };

beforeAll(async () => {
  pair = await startPair("usr", { env });
  ({ a, b, prefix, database } = pair);
});

afterAll(async () => {
  await pair?.close();
});

async function query<Row>(text: string, values: unknown[]): Promise<Row[]> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as Row[];
  } finally {
    await client.end();
  }
}

describe("the directory", () => {
  it("stores an argon2id hash, never the password; usernames are unique regardless of case", async () => {
    const user = await a.auth.directory.create({
      username: "Hashed",
      password: "correct horse battery",
      roles: ["user", "user"],
      groups: ["g1"],
    });
    expect(user).toMatchObject({ username: "Hashed", roles: ["user"], groups: ["g1"], disabled: false });
    expect(user.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    const rows = await query<{ password_hash: string }>("select password_hash from users where id = $1", [
      user.id,
    ]);
    expect(rows[0]?.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(rows[0]?.password_hash).not.toContain("correct horse");
    await expect(
      a.auth.directory.create({ username: "hashed", password: "another-one", roles: [], groups: [] }),
    ).rejects.toThrow(/already exists/);
    await expect(
      a.auth.directory.create({ username: "has space", password: "long-enough", roles: [], groups: [] }),
    ).rejects.toThrow(/username/);
    await expect(
      a.auth.directory.create({ username: "shorty", password: "short", roles: [], groups: [] }),
    ).rejects.toThrow(/password/);
  });

  it("verifies passwords; unknown and disabled users fail like a wrong password, in about the same time", async () => {
    const user = await a.auth.directory.create({
      username: "timed",
      password: "right-password",
      roles: [],
      groups: [],
    });
    expect((await a.auth.directory.verifyCredentials("TIMED", "right-password"))?.id).toBe(user.id);
    expect(await a.auth.directory.verifyCredentials("timed", "wrong-password")).toBeUndefined();
    expect(await a.auth.directory.verifyCredentials("nobody-here", "right-password")).toBeUndefined();

    const median = async (username: string) => {
      const samples = [];
      for (let i = 0; i < 7; i++) {
        const started = performance.now();
        await a.auth.directory.verifyCredentials(username, "wrong-password");
        samples.push(performance.now() - started);
      }
      return samples.sort((x, y) => x - y)[3]!;
    };
    const known = await median("timed");
    const unknown = await median("nobody-here");
    // Both pay for one argon2id verification; a skipped hash would be ~100x faster.
    expect(unknown).toBeGreaterThan(known * 0.5);
    expect(known).toBeGreaterThan(unknown * 0.5);

    await a.auth.directory.setDisabled(user.id, true);
    expect(await a.auth.directory.verifyCredentials("timed", "right-password")).toBeUndefined();
  });
});

describe("tessera users", () => {
  const saved = { ...process.env };
  const output: string[] = [];
  afterEach(() => {
    process.env = { ...saved };
    vi.restoreAllMocks();
    output.length = 0;
  });

  async function cli(...argv: string[]) {
    process.env.DATABASE_URL = database.url;
    process.env.NATS_URL = NATS_URL;
    process.env.TESSERA_PREFIX = prefix;
    vi.spyOn(console, "log").mockImplementation((line: string) => output.push(line));
    vi.spyOn(console, "error").mockImplementation((line: string) => output.push(line));
    const code = await runUsersCommand(argv);
    return { code, last: output.at(-1) ?? "" };
  }

  it("add, set-password (ends sessions), set-roles, disable (ends sessions on every instance), enable", async () => {
    const added = await cli(
      "add",
      "operator",
      "--roles",
      "admin,user",
      "--groups",
      "ops",
      "--password",
      "first-pass-1",
    );
    expect(added.code, added.last).toBe(0);
    expect(JSON.parse(added.last)).toMatchObject({
      username: "operator",
      roles: ["admin", "user"],
      groups: ["ops"],
    });
    expect(added.last).not.toContain("first-pass-1");
    expect((await cli("add", "operator", "--password", "x-long-enough")).code).toBe(1);

    const before = await login(a, "operator", "first-pass-1");
    expect(before.scope).toBe("sessions:read sessions:write admin:sessions");
    const reset = await cli("set-password", "operator", "--password", "second-pass-2");
    expect(reset.code, reset.last).toBe(0);
    expect(JSON.parse(reset.last).sessions_ended).toBe(1);
    expect(await sessionStatus(a, before.session_id)).toMatchObject({
      status: "invalidated",
      end_reason: "password_changed",
    });
    expect(
      (await tokenRequest(b, { grant_type: "password", username: "operator", password: "first-pass-1" }))
        .statusCode,
    ).toBe(400);

    const roles = await cli("set-roles", "operator", "viewer");
    expect(roles.code, roles.last).toBe(0);
    expect(JSON.parse(roles.last)).toMatchObject({ roles: ["viewer"], groups: ["ops"] });
    const viewerLogin = await login(b, "operator", "second-pass-2");
    expect(viewerLogin.scope).toBe("sessions:read");

    const live = [viewerLogin, await login(a, "operator", "second-pass-2")];
    const disabled = await cli("disable", "operator");
    expect(disabled.code, disabled.last).toBe(0);
    expect(JSON.parse(disabled.last)).toMatchObject({ disabled: true, sessions_ended: 2 });
    for (const session of live) {
      for (const on of [a, b])
        expect((await getSession(on, session.session_id, session.access_token)).statusCode).toBe(401);
      expect(await sessionStatus(a, session.session_id)).toMatchObject({ end_reason: "user_disabled" });
    }
    const refused = await tokenRequest(a, {
      grant_type: "password",
      username: "operator",
      password: "second-pass-2",
    });
    expect(refused.json()).toMatchObject({ error: "invalid_grant" });

    expect((await cli("enable", "operator")).code).toBe(0);
    await login(a, "operator", "second-pass-2");
  });

  it("refuses what it cannot do: no DATABASE_URL, or session-changing commands without NATS_URL", async () => {
    process.env.NATS_URL = "";
    delete process.env.DATABASE_URL;
    await expect(runUsersCommand(["show", "x"])).rejects.toBeInstanceOf(ConfigError);
    process.env.DATABASE_URL = database.url;
    await expect(runUsersCommand(["disable", "x"])).rejects.toThrow(/NATS_URL/);
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    expect(await runUsersCommand(["frobnicate", "x"])).toBe(2);
  });

  it("the binary reads the password from stdin", async () => {
    const child = spawn(process.execPath, ["bin/tessera.mjs", "users", "add", "piped", "--password-stdin"], {
      env: { PATH: process.env.PATH ?? "", DATABASE_URL: database.url, LOG_LEVEL: "silent" },
    });
    let stdout = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stdin.end("piped-password-1\n");
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code, stdout).toBe(0);
    expect(JSON.parse(stdout.trim())).toMatchObject({ username: "piped", roles: ["user"] });
    await login(a, "piped", "piped-password-1");
  });
});

describe("embedded mode", () => {
  it("seeds the three demo users of seed 001 with their roles", async () => {
    const embedded = await startEmbedded();
    try {
      const admin = await login(embedded, "admin", "admin123!");
      expect(admin.scope).toBe("sessions:read sessions:write admin:sessions");
      expect((await login(embedded, "demo", "demo123!")).scope).toBe("sessions:read sessions:write");
      expect((await login(embedded, "viewer", "viewer123!")).scope).toBe("sessions:read");
      expect((await embedded.auth.directory.findByUsername("admin"))?.roles).toEqual(["admin", "user"]);
    } finally {
      await embedded.close();
    }
  }, 60_000); // PGlite takes seconds to start, more on a loaded machine
});
