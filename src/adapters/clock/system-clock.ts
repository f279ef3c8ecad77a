import { randomFillSync } from "node:crypto";
import { v7 as uuidv7 } from "uuid";
import type { Clock, IdGenerator, SecretGenerator } from "../../domain/ports.ts";

export const systemClock: Clock = { now: () => Date.now() };

/** UUIDv7s stamped with the given clock's time, so ids and timestamps agree under a fake clock too. */
export function createUuidV7Generator(clock: Clock): IdGenerator {
  return { uuidv7: () => uuidv7({ msecs: clock.now() }) };
}

const SECRET_BYTES = 32;
/** Secrets drawn per call to the CSPRNG: each call costs microseconds whatever its size. */
const SECRETS_PER_DRAW = 16;
const pool = Buffer.alloc(SECRET_BYTES * SECRETS_PER_DRAW);
let drawn = pool.length;

/**
 * 32 random bytes per secret, from the CSPRNG in draws of 16 secrets. Each secret's bytes are wiped
 * from the pool as it is handed out, so the pool only ever holds secrets not issued yet.
 */
export const randomSecrets: SecretGenerator = {
  newSecret: () => {
    if (drawn >= pool.length) {
      randomFillSync(pool);
      drawn = 0;
    }
    const secret = pool.toString("base64url", drawn, drawn + SECRET_BYTES);
    pool.fill(0, drawn, drawn + SECRET_BYTES);
    drawn += SECRET_BYTES;
    return secret;
  },
};
