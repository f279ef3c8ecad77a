import type { Clock } from "../domain/ports.ts";
import { isAdmin, type Principal } from "./access.ts";
import type { ReadModelFreshness, SessionReadModel, SessionStats } from "./ports.ts";

/**
 * The statistics a caller sees (REST and MCP alike): everyone's for an admin, otherwise the caller's own,
 * read after this instance's own writes have reached the read model. Permission checks stay with the caller.
 */
export async function statsFor(
  principal: Principal,
  deps: {
    service: { readYourWrites(): Promise<ReadModelFreshness> };
    readModel: SessionReadModel;
    clock: Clock;
  },
): Promise<{ stats: SessionStats; scope: "global" | "user"; freshness: ReadModelFreshness }> {
  const global = isAdmin(principal);
  const freshness = await deps.service.readYourWrites();
  const stats = await deps.readModel.stats(
    global || principal.kind !== "user" ? undefined : principal.userId,
    deps.clock.now(),
  );
  return { stats, scope: global ? "global" : "user", freshness };
}
