import { userInfo } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import pino from "pino";
import { createUuidV7Generator, randomSecrets, systemClock } from "./adapters/clock/system-clock.ts";
import { connectNats } from "./adapters/jetstream/connection.ts";
import { createJetStreamEventLog } from "./adapters/jetstream/event-log.ts";
import { createValidationReplica } from "./adapters/memory/validation-replica.ts";
import { type DatabaseHandle, openDatabase } from "./adapters/postgres/database.ts";
import { createSessionReadModel } from "./adapters/postgres/session-read-model.ts";
import { createPostgresUserDirectory } from "./adapters/postgres/user-directory.ts";
import type { CommandContext } from "./app/command-handler.ts";
import type { UserRecord } from "./app/ports.ts";
import { createSessionService } from "./app/session-service.ts";
import { createUserAdmin } from "./app/user-admin.ts";
import { createUserService } from "./app/user-service.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { DomainError } from "./domain/errors.ts";

export const USERS_USAGE = `Usage: tessera users <command> <username> [options]

Commands:
  add <username> [--roles r1,r2] [--groups g1,g2]   create a password user (roles default: user)
  set-password <username>                           set a new password; ends the user's sessions
  set-roles <username> <r1,r2> [--groups g1,g2]     replace roles (and groups); live sessions are recycled
  disable <username>                                refuse logins and end every session of the user
  enable <username>                                 allow logins again
  show <username>                                   print the user (never the password hash)

The password is read from stdin with --password-stdin (e.g. printf '%s' "$PW" | tessera users add bob
--password-stdin), or from --password <value> (visible to other local users in the process list).

Works on DATABASE_URL. set-password, set-roles and disable also change sessions, so they need NATS_URL
(and the same TESSERA_PREFIX as the servers).`;

type Options = { positional: string[]; flags: Map<string, string | true> };

const VALUE_FLAGS = new Set(["--roles", "--groups", "--password"]);
const BOOLEAN_FLAGS = new Set(["--password-stdin"]);
const NEEDS_EVENT_LOG = new Set(["set-password", "set-roles", "disable"]);

/** `tessera users …`; returns the exit code. Errors a user can fix are printed without a stack. */
export async function runUsersCommand(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help") {
    console.log(USERS_USAGE);
    return command === undefined ? 2 : 0;
  }
  if (!["add", "set-password", "set-roles", "disable", "enable", "show"].includes(command)) {
    console.error(`Unknown users command: ${command}\n\n${USERS_USAGE}`);
    return 2;
  }
  const options = parseOptions(rest);
  if (typeof options === "string") {
    console.error(`${options}\n\n${USERS_USAGE}`);
    return 2;
  }
  const [username] = options.positional;
  if (!username) {
    console.error(`Missing <username>\n\n${USERS_USAGE}`);
    return 2;
  }

  const infra = await openInfrastructure(NEEDS_EVENT_LOG.has(command), command);
  try {
    const admin = createUserAdmin({
      users: infra.directory,
      service: infra.service,
      changeClaims: infra.userService?.changeClaims,
      // Security events go to stderr: stdout is the command's JSON answer.
      security: pino({ name: "tessera" }, pino.destination(2)),
    });
    const context: CommandContext = {
      commandId: infra.ids.uuidv7(),
      actor: { kind: "admin", id: `cli:${safeUser()}` },
      source: "cli",
    };
    switch (command) {
      case "add": {
        const password = await passwordFrom(options);
        const user = await admin.add(
          {
            username,
            password,
            roles: listFlag(options, "--roles") ?? ["user"],
            groups: listFlag(options, "--groups") ?? [],
          },
          context,
        );
        print(user);
        return 0;
      }
      case "set-password": {
        const password = await passwordFrom(options);
        const { user, ended } = await admin.setPassword(username, password, context);
        print(user, { sessions_ended: ended });
        return 0;
      }
      case "set-roles": {
        const roles = options.positional[1];
        if (roles === undefined) {
          console.error(`set-roles needs the roles, e.g. tessera users set-roles ${username} admin,user`);
          return 2;
        }
        const user = await admin.setClaims(
          username,
          { roles: splitList(roles), groups: listFlag(options, "--groups") },
          context,
        );
        print(user);
        return 0;
      }
      case "disable": {
        const { user, ended } = await admin.disable(username, context);
        print(user, { sessions_ended: ended });
        return 0;
      }
      case "enable":
        print(await admin.enable(username));
        return 0;
      case "show":
        print(await admin.find(username));
        return 0;
      default:
        return 2;
    }
  } catch (error) {
    if (error instanceof DomainError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  } finally {
    await infra.close();
  }
}

async function openInfrastructure(needsEventLog: boolean, command: string) {
  const env = process.env;
  const databaseUrl = env.DATABASE_URL?.trim();
  if (!databaseUrl) {
    throw new ConfigError([
      "DATABASE_URL: `tessera users` manages the user directory in Postgres (embedded mode only has the demo users)",
    ]);
  }
  if (needsEventLog && !env.NATS_URL?.trim()) {
    throw new ConfigError([
      `NATS_URL: \`users ${command}\` changes the user's sessions, so it needs the event log`,
    ]);
  }
  const config = env.NATS_URL?.trim() ? loadConfig(env) : undefined;
  const clock = systemClock;
  const ids = createUuidV7Generator(clock);
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch(() => undefined);
  };
  try {
    const database: DatabaseHandle = await openDatabase({ url: databaseUrl, poolSize: 2 });
    closers.push(() => database.close());
    const directory = createPostgresUserDirectory({ db: database.db, ids, clock });
    if (!config) return { directory, ids, service: undefined, userService: undefined, close };

    const nc: NatsConnection = await connectNats(config.natsUrl ?? "", "tessera-cli-users");
    closers.push(() => nc.drain().catch(() => nc.close()));
    const log = await createJetStreamEventLog({ nc, prefix: config.prefix, replicas: config.natsReplicas });
    const readModel = createSessionReadModel(database.db);
    const replica = createValidationReplica();
    const service = createSessionService({
      ...{ log, clock, ids, secrets: randomSecrets, policy: config.policy, replica, readModel },
      idempotencySecret: randomSecrets.newSecret(),
    });
    const userService = createUserService({ log, clock, ids, replica, readModel, directory });
    return { directory, ids, service, userService, close };
  } catch (error) {
    await close();
    throw error;
  }
}

function parseOptions(args: string[]): Options | string {
  const options: Options = { positional: [], flags: new Map() };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (BOOLEAN_FLAGS.has(arg)) options.flags.set(arg, true);
    else if (VALUE_FLAGS.has(arg)) {
      const value = args[++i];
      if (value === undefined) return `${arg} needs a value`;
      options.flags.set(arg, value);
    } else if (arg.startsWith("--")) return `Unknown option: ${arg}`;
    else options.positional.push(arg);
  }
  return options;
}

const splitList = (value: string) =>
  value
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item.length > 0);

function listFlag(options: Options, name: string): string[] | undefined {
  const value = options.flags.get(name);
  return typeof value === "string" ? splitList(value) : undefined;
}

async function passwordFrom(options: Options): Promise<string> {
  const given = options.flags.get("--password");
  if (typeof given === "string") return given;
  if (options.flags.get("--password-stdin") === true) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks)
      .toString("utf8")
      .replace(/\r?\n$/, "");
  }
  throw new DomainError("invalid_request", "Give the password with --password-stdin (or --password <value>)");
}

function print(user: UserRecord, extra: Record<string, unknown> = {}) {
  console.log(
    JSON.stringify({
      id: user.id,
      username: user.username,
      roles: user.roles,
      groups: user.groups,
      disabled: user.disabled,
      created_at: user.createdAt.toISOString(),
      updated_at: user.updatedAt.toISOString(),
      ...extra,
    }),
  );
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}
