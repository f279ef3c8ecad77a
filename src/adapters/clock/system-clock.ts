import { randomBytes } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type { Clock, IdGenerator, SecretGenerator } from "../../domain/ports.ts";

export const systemClock: Clock = { now: () => Date.now() };

/** UUIDv7s stamped with the given clock's time, so ids and timestamps agree under a fake clock too. */
export function createUuidV7Generator(clock: Clock): IdGenerator {
  return { uuidv7: () => uuidv7({ msecs: clock.now() }) };
}

export const randomSecrets: SecretGenerator = { newSecret: () => randomBytes(32).toString("base64url") };
