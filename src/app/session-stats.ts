import type { Clock } from "../domain/ports.ts";
import { isAdmin, type Principal } from "./access.ts";
import type { SessionReadModel, SessionStats } from "./ports.ts";

/**
 * The statistics a caller sees (REST and MCP alike): everyone's for an admin, otherwise the caller's own,
 * read after this instance's own writes have reached the read model. Permission checks stay with the caller.
 */
export async function statsFor(
  principal: Principal,
  deps: { service: { readYourWrites(): Promise<unknown> }; readModel: SessionReadModel; clock: Clock },
): Promise<{ stats: SessionStats; scope: "global" | "user" }> {
  const global = isAdmin(principal);
  await deps.service.readYourWrites();
  const stats = await deps.readModel.stats(
    global || principal.kind !== "user" ? undefined : principal.userId,
    deps.clock.now(),
  );
  return { stats, scope: global ? "global" : "user" };
}
