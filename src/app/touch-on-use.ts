import type { IdGenerator } from "../domain/ports.ts";
import type { ValidationEntry } from "../projections/validation-entry.ts";
import type { CommandContext } from "./command-handler.ts";
import type { SessionService } from "./session-service.ts";
import type { RequestFacts } from "./validator.ts";

/**
 * Records that a validated session was used (SessionTouched, which moves its idle deadline), on behalf
 * of its own user, from where the validation came. Fire and forget: the validation has already been
 * answered, so a failed touch is only reported. The touch records `usedAt`, not the moment it is
 * processed: a touch that waited (a version conflict lost to another instance's touch, a slow log) must
 * not move the idle deadline past what the use earned, nor append a second touch for the same use.
 */
export function touchOnUse(
  deps: { service: SessionService; ids: IdGenerator },
  entry: ValidationEntry,
  facts: RequestFacts,
  usedAt: number,
  source: CommandContext["source"],
  onError: (error: unknown) => void,
): void {
  deps.service
    .touch(
      entry.sessionId,
      { ipAddress: facts.ip, userAgent: facts.userAgent, usedAt },
      { commandId: deps.ids.uuidv7(), actor: { kind: "user", id: entry.userId }, source, ip: facts.ip },
    )
    .catch(onError);
}
