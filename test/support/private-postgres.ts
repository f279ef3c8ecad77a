import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.ts";

/**
 * A Postgres server of a test file's own (its own port, data and socket directory), for tests that stop
 * and start it: the shared server on 5432 is never touched. Postgres refuses to run as root, so when the
 * tests run as root its commands run as the `postgres` OS user through runuser.
 */

const run = promisify(execFile);

const PG_BIN = [
  process.env.POSTGRES_BIN_DIR,
  "/usr/lib/postgresql/15/bin",
  "/usr/lib/postgresql/16/bin",
  "/usr/lib/postgresql/17/bin",
]
  .filter((dir): dir is string => dir !== undefined)
  .find((dir) => existsSync(join(dir, "pg_ctl")));

export type PrivatePostgres = {
  port: number;
  /** A connection string to its `postgres` database. */
  url: string;
  /** `pg_ctl stop -m fast`: open connections are terminated, new ones refused. */
  stop(): Promise<void>;
  /** `pg_ctl start`, returning once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (immediately) whatever state it is in and removes its directory. Safe to call twice. */
  destroy(): Promise<void>;
};

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  if (PG_BIN === undefined) {
    throw new Error("PostgreSQL binaries not found (apt-get install postgresql-15, or set POSTGRES_BIN_DIR)");
  }
  const asRoot = userInfo().uid === 0;
  const pgCommand = (binary: string, args: string[]) =>
    asRoot
      ? run("runuser", ["-u", "postgres", "--", join(PG_BIN, binary), ...args])
      : run(join(PG_BIN, binary), args);

  const dir = await mkdtemp(join(tmpdir(), "tessera-pg-"));
  if (asRoot) {
    const { stdout: uid } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    await chown(dir, Number(uid.trim()), Number(gid.trim()));
  }
  const data = join(dir, "data");
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`;
  const ctl = (...args: string[]) => pgCommand("pg_ctl", ["-D", data, ...args]);
  let destroyed = false;

  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await ctl("stop", "-m", "immediate", "-w").catch(() => killPostmaster(data));
    await rm(dir, { recursive: true, force: true });
  };

  try {
    // --no-sync only spares initdb's final flush of a throwaway cluster; the server itself keeps fsync
    // on, so a commit it acknowledged is durable across the restarts under test.
    await pgCommand("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
    await ctl("start", "-w", "-t", "30", "-l", join(dir, "server.log"), "-o", options);
  } catch (error) {
    await destroy();
    throw error;
  }

  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await ctl("stop", "-m", "fast", "-w", "-t", "30");
    },
    async start() {
      await ctl("start", "-w", "-t", "30", "-l", join(dir, "server.log"), "-o", options);
    },
    destroy,
  };
}

/** The last resort when pg_ctl cannot stop it: SIGQUIT (immediate shutdown) to the postmaster. */
async function killPostmaster(data: string): Promise<void> {
  const pidFile = await readFile(join(data, "postmaster.pid"), "utf8").catch(() => "");
  const pid = Number(pidFile.split("\n")[0]);
  if (Number.isInteger(pid) && pid > 0) {
    try {
      process.kill(pid, "SIGQUIT");
    } catch {
      // Already gone.
    }
  }
}
