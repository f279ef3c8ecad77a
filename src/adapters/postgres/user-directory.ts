import type { Algorithm, Options as Argon2Options } from "@node-rs/argon2";
import { hash, verify } from "@node-rs/argon2";
import type { ColumnType, Kysely, Updateable } from "kysely";
import type { UserDirectory, UserRecord } from "../../app/ports.ts";
import { DomainError } from "../../domain/errors.ts";
import type { Clock, IdGenerator } from "../../domain/ports.ts";
import { isStorableText } from "../../domain/storable-text.ts";

/**
 * The user directory on Postgres (or PGlite in embedded mode). Passwords are argon2id hashes with the
 * OWASP parameters below; the hash never leaves this file. Verification costs one argon2 computation
 * whether or not the username exists (a dummy hash stands in), so timing does not reveal which usernames
 * are taken, and a disabled account fails exactly like a wrong password.
 */

/** argon2id, 19 MiB, 2 passes, 1 lane: OWASP's recommended minimum (~10-20 ms per hash on one core). */
export const ARGON2_PARAMS = {
  algorithm: 2 as Algorithm, // Argon2id (a const enum in the binding's types)
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
} satisfies Argon2Options;

export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 1024;
const USERNAME = /^[\p{L}\p{N}._@+-]{1,128}$/u;

type Json<T> = ColumnType<T, string, string>;
type Timestamp = ColumnType<Date, Date, Date>;

export interface UsersTable {
  id: string;
  username: string;
  password_hash: string;
  roles: Json<string[]>;
  groups: Json<string[]>;
  disabled: boolean;
  created_at: Timestamp;
  updated_at: Timestamp;
}

type UsersDatabase = { users: UsersTable };
type UserRow = {
  id: string;
  username: string;
  roles: string[];
  groups: string[];
  disabled: boolean;
  created_at: Date;
  updated_at: Date;
};

export function createPostgresUserDirectory<DB>(deps: {
  db: Kysely<DB>;
  ids: IdGenerator;
  clock: Clock;
}): UserDirectory {
  const db = deps.db.withTables<UsersDatabase>() as unknown as Kysely<UsersDatabase>;
  let dummyHash: Promise<string> | undefined;
  const dummy = () => {
    dummyHash ??= hash("tessera-dummy-password-for-constant-time", ARGON2_PARAMS);
    return dummyHash;
  };
  // Start computing it now so the first failed login costs the same as every later one.
  void dummy().catch(() => undefined);

  const publicColumns = [
    "id",
    "username",
    "roles",
    "groups",
    "disabled",
    "created_at",
    "updated_at",
  ] as const;

  async function byUsername(username: string) {
    return db
      .selectFrom("users")
      .select([...publicColumns, "password_hash"])
      .where((eb) => eb(eb.fn("lower", ["username"]), "=", username.toLowerCase()))
      .executeTakeFirst();
  }

  async function byId(id: string) {
    // An IdP webhook's user id is the IdP's text: Postgres would refuse a query holding a NUL.
    if (!isStorableText(id)) return undefined;
    return db.selectFrom("users").select(publicColumns).where("id", "=", id).executeTakeFirst();
  }

  async function update(id: string, changes: Updateable<UsersTable>) {
    if (!isStorableText(id)) throw userNotFound(id);
    const row = await db
      .updateTable("users")
      .set({ ...changes, updated_at: new Date(deps.clock.now()) })
      .where("id", "=", id)
      .returning(publicColumns)
      .executeTakeFirst();
    if (!row) throw userNotFound(id);
    return toRecord(row);
  }

  return {
    async verifyCredentials(username, password) {
      const row =
        USERNAME.test(username) && password.length <= PASSWORD_MAX_LENGTH
          ? await byUsername(username)
          : undefined;
      const ok = await safeVerify(row?.password_hash ?? (await dummy()), password);
      if (!row || !ok || row.disabled) return undefined;
      return toRecord(row);
    },

    async findById(id) {
      const row = await byId(id);
      return row ? toRecord(row) : undefined;
    },

    async findByUsername(username) {
      if (!USERNAME.test(username)) return undefined;
      const row = await byUsername(username);
      return row ? toRecord(row) : undefined;
    },

    async create(input) {
      requireUsername(input.username);
      requirePassword(input.password);
      const now = new Date(deps.clock.now());
      const passwordHash = await hash(input.password, ARGON2_PARAMS);
      try {
        const row = await db
          .insertInto("users")
          .values({
            id: input.id ?? deps.ids.uuidv7(),
            username: input.username,
            password_hash: passwordHash,
            roles: JSON.stringify(uniqueNames(input.roles)),
            groups: JSON.stringify(uniqueNames(input.groups)),
            disabled: false,
            created_at: now,
            updated_at: now,
          })
          .returning(publicColumns)
          .executeTakeFirstOrThrow();
        return toRecord(row);
      } catch (error) {
        if (isUniqueViolation(error)) {
          throw new DomainError("invalid_request", `A user named '${input.username}' already exists`, {
            reason: "user_exists",
          });
        }
        throw error;
      }
    },

    async setPassword(id, password) {
      requirePassword(password);
      return update(id, { password_hash: await hash(password, ARGON2_PARAMS) });
    },

    async setClaims(id, claims) {
      return update(id, {
        roles: JSON.stringify(uniqueNames(claims.roles)),
        groups: JSON.stringify(uniqueNames(claims.groups)),
      });
    },

    async setDisabled(id, disabled) {
      return update(id, { disabled });
    },
  };
}

/** The three demo accounts of seed 001; embedded mode only (real deployments start with no users). */
export const DEMO_USERS = [
  { username: "admin", password: "admin123!", roles: ["admin", "user"] },
  { username: "demo", password: "demo123!", roles: ["user"] },
  { username: "viewer", password: "viewer123!", roles: ["viewer"] },
] as const;

export async function seedDemoUsers(directory: UserDirectory): Promise<UserRecord[]> {
  const seeded: UserRecord[] = [];
  for (const user of DEMO_USERS) {
    const existing = await directory.findByUsername(user.username);
    seeded.push(
      existing ??
        (await directory.create({
          username: user.username,
          password: user.password,
          roles: [...user.roles],
          groups: [],
        })),
    );
  }
  return seeded;
}

async function safeVerify(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    // A corrupt stored hash is a failed login, not a 500 that would tell the caller the account exists.
    return false;
  }
}

function toRecord(row: UserRow): UserRecord {
  return {
    id: row.id,
    username: row.username,
    roles: row.roles,
    groups: row.groups,
    disabled: row.disabled,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function uniqueNames(names: string[]): string[] {
  return [...new Set(names.map((name) => name.trim()).filter((name) => name.length > 0))];
}

function requireUsername(username: string) {
  if (!USERNAME.test(username)) {
    throw new DomainError(
      "invalid_request",
      "username must be 1-128 letters, digits or . _ @ + - (no spaces)",
      { reason: "invalid_username" },
    );
  }
}

function requirePassword(password: string) {
  if (password.length < PASSWORD_MIN_LENGTH || password.length > PASSWORD_MAX_LENGTH) {
    throw new DomainError(
      "invalid_request",
      `password must be ${PASSWORD_MIN_LENGTH}-${PASSWORD_MAX_LENGTH} characters`,
      { reason: "weak_password" },
    );
  }
}

const userNotFound = (id: string) =>
  new DomainError("invalid_request", `No user with id '${id}'`, { reason: "user_not_found" });

function isUniqueViolation(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === "23505";
}
