import { z } from "zod";
import { UNSTORABLE_TEXT_MESSAGE } from "../../domain/storable-text.ts";
import { isStorableJson, nestsAtMost } from "./storable-text.ts";

/**
 * `credentials` of POST /v1/sessions: opaque upstream credentials (seed 000: Jira/Confluence URLs, tokens,
 * e-mails), kept encrypted for the session's life (docs/credentials.md). Tessera never looks inside; it only
 * bounds them. Storable text only: the plaintext never reaches Postgres, but the validator service and
 * whoever reads them back get JSON that any store can hold.
 */

export const MAX_CREDENTIALS_BYTES = 4 * 1024;
const MAX_CREDENTIALS_DEPTH = 8;

// The depth check first (see metadataSchema in schemas.ts): serialising a deeply nested value overflows.
export const credentialsSchema = z
  .record(z.string().max(128), z.unknown())
  .refine((value) => Object.keys(value).length > 0, { message: "credentials must not be empty" })
  .refine((value) => nestsAtMost(value, MAX_CREDENTIALS_DEPTH), {
    message: `credentials must nest at most ${MAX_CREDENTIALS_DEPTH} levels deep`,
  })
  .refine((value) => !nestsAtMost(value, MAX_CREDENTIALS_DEPTH) || isStorableJson(value), {
    message: `credentials ${UNSTORABLE_TEXT_MESSAGE}`,
  })
  .refine(
    (value) =>
      !nestsAtMost(value, MAX_CREDENTIALS_DEPTH) ||
      Buffer.byteLength(JSON.stringify(value)) <= MAX_CREDENTIALS_BYTES,
    { message: `credentials must serialise to at most ${MAX_CREDENTIALS_BYTES} bytes` },
  );
