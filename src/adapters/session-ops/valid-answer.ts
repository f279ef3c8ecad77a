import type { SessionService } from "../../app/session-service.ts";
import { DependencyUnavailableError } from "../../app/unavailable.ts";
import type { RequestFacts } from "../../app/validator.ts";
import type { Clock } from "../../domain/ports.ts";
import type { ExistingSession } from "../../domain/session-state.ts";
import type { ValidationEntry } from "../../projections/validation-entry.ts";
import { type SessionView, viewFromEntry, viewFromState } from "../http/schemas.ts";

/**
 * What a validation answers once memory has judged the token valid, for every transport (REST's
 * POST /v1/sessions/validate, WebSocket's sessions.validate, gRPC's Validate): the gateway's IdP `jwt`
 * checked if given, then the session's view. While NATS is away and the session is not cached here, the
 * view is built from the validation entry and marked `partial` (a 503 would fail every gateway's request
 * for a token memory has already judged).
 */

export type CheckJwtClaims = (
  entry: ValidationEntry,
  jwt: string,
  facts: RequestFacts,
) => Promise<{ ok: true } | { ok: false; reason: string }>;

export type ValidAnswerDeps = {
  service: SessionService;
  clock: Clock;
  checkJwtClaims?: CheckJwtClaims | undefined;
};

export type ValidatedUser = { id: string; username: string; roles: string[]; groups: string[] };

export type ValidAnswer =
  | { valid: true; session: SessionView; user: ValidatedUser; partial: boolean }
  | { valid: false; reason: string };

export const userOf = (entry: ValidationEntry): ValidatedUser => ({
  id: entry.userId,
  username: entry.username,
  roles: entry.roles,
  groups: entry.groups,
});

export async function answerForValid(
  deps: ValidAnswerDeps,
  entry: ValidationEntry,
  jwt: string | undefined,
  facts: RequestFacts,
): Promise<ValidAnswer> {
  if (jwt !== undefined) {
    const verdict = deps.checkJwtClaims
      ? await deps.checkJwtClaims(entry, jwt, facts)
      : { ok: false as const, reason: "malformed" };
    if (!verdict.ok) return { valid: false, reason: verdict.reason };
  }
  let session: ExistingSession | undefined;
  try {
    session = await deps.service.getAtLeast(entry.sessionId, entry.position);
  } catch (error) {
    if (!(error instanceof DependencyUnavailableError)) throw error;
    return { valid: true, session: viewFromEntry(entry), user: userOf(entry), partial: true };
  }
  if (!session) return { valid: false, reason: "not_found" };
  return {
    valid: true,
    session: viewFromState(session, deps.clock.now()),
    user: userOf(entry),
    partial: false,
  };
}
