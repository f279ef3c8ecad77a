import type { Logger } from "pino";
import { DomainError } from "../domain/errors.ts";
import type { Claims } from "../domain/events.ts";
import type { CommandContext } from "./command-handler.ts";
import type { UserDirectory, UserRecord } from "./ports.ts";
import type { SessionService } from "./session-service.ts";

/**
 * Managing password users (`tessera users …`). Changes that take access away end the user's sessions at
 * once: disabling (`user_disabled`) and a new password (`password_changed`, so a stolen session does not
 * outlive the reset). Role changes go through the claims change of the user stream when one is wired, so
 * live sessions holding the old roles are recycled.
 */
export function createUserAdmin(deps: {
  users: UserDirectory;
  /** Absent when only the directory is reachable (no NATS): such commands change no sessions. */
  service?: SessionService | undefined;
  changeClaims?: ((userId: string, claims: Claims, context: CommandContext) => Promise<unknown>) | undefined;
  /** Where password changes go as security events (NIST IA-5, authenticator management). */
  security?: Pick<Logger, "info"> | undefined;
}) {
  const { users } = deps;

  /** A password set or replaced: who did it to whom, never the password or its hash. */
  function passwordEvent(event: "password_set" | "password_changed", user: UserRecord, actor: unknown) {
    deps.security?.info(
      { component: "auth", event, nist: ["ia-5", "au-3"], userId: user.id, username: user.username, actor },
      event === "password_set" ? "password set" : "password changed",
    );
  }

  async function find(username: string): Promise<UserRecord> {
    const user = await users.findByUsername(username);
    if (!user)
      throw new DomainError("invalid_request", `No user named '${username}'`, { reason: "user_not_found" });
    return user;
  }

  function requireService(): SessionService {
    if (!deps.service) {
      throw new DomainError("invalid_request", "This change ends sessions: set NATS_URL too", {
        reason: "needs_event_log",
      });
    }
    return deps.service;
  }

  return {
    find,

    async add(
      input: { username: string; password: string; roles: string[]; groups: string[] },
      context?: CommandContext,
    ) {
      const user = await users.create(input);
      passwordEvent("password_set", user, context?.actor);
      return user;
    },

    async setPassword(username: string, password: string, context: CommandContext) {
      const service = requireService();
      const user = await users.setPassword((await find(username)).id, password);
      passwordEvent("password_changed", user, context.actor);
      const ended = await service.revokeAll(user.id, "password_changed", undefined, context);
      return { user, ended };
    },

    async setClaims(
      username: string,
      claims: { roles: string[]; groups?: string[] | undefined },
      context: CommandContext,
    ) {
      const current = await find(username);
      const next = { roles: claims.roles, groups: claims.groups ?? current.groups };
      if (deps.changeClaims) await deps.changeClaims(current.id, next, context);
      return users.setClaims(current.id, next);
    },

    async disable(username: string, context: CommandContext) {
      const service = requireService();
      const user = await users.setDisabled((await find(username)).id, true);
      const ended = await service.revokeAll(user.id, "user_disabled", undefined, context);
      return { user, ended };
    },

    async enable(username: string) {
      return users.setDisabled((await find(username)).id, false);
    },
  };
}

export type UserAdmin = ReturnType<typeof createUserAdmin>;
