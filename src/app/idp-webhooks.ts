import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Clock } from "../domain/ports.ts";
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from "../domain/storable-text.ts";
import type { CommandContext } from "./command-handler.ts";
import type { ReplayStore } from "./idp-ports.ts";
import type { UserDirectory } from "./ports.ts";
import type { SessionService } from "./session-service.ts";
import type { UserService } from "./user-service.ts";

/**
 * IdP webhooks signed as the Standard Webhooks specification says: headers `webhook-id`,
 * `webhook-timestamp` (unix seconds) and `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>`
 * of `${id}.${timestamp}.${body}`), secret `whsec_<base64 key>`. A bad signature, a timestamp more than
 * five minutes off, or an id seen before is refused and nothing is recorded.
 */

export const WEBHOOK_TOLERANCE_MS = 5 * 60_000;
/** Ids are remembered past the whole window in which their timestamp could still be accepted. */
const REPLAY_MEMORY_MS = 2 * WEBHOOK_TOLERANCE_MS + 60_000;

export type WebhookHeaders = {
  id: string | undefined;
  timestamp: string | undefined;
  signature: string | undefined;
};

export type SignatureProblem = "missing_headers" | "stale_timestamp" | "bad_signature";

/** The signing key: `whsec_` + base64 as the spec prints it, or else the secret's own bytes. */
export function webhookKey(secret: string): Buffer {
  return secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret, "utf8");
}

export function signWebhook(key: Buffer, id: string, timestamp: number | string, body: string): string {
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

export function verifyWebhookSignature(
  key: Buffer,
  headers: WebhookHeaders,
  body: string,
  now: number,
): { ok: true; id: string } | { ok: false; problem: SignatureProblem } {
  const { id, timestamp, signature } = headers;
  if (!id || !timestamp || !signature || id.length > 256) return { ok: false, problem: "missing_headers" };
  if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, problem: "stale_timestamp" };
  if (Math.abs(now - Number(timestamp) * 1000) > WEBHOOK_TOLERANCE_MS)
    return { ok: false, problem: "stale_timestamp" };
  const expected = Buffer.from(signWebhook(key, id, timestamp, body).slice(3), "base64");
  // Several signatures may be sent while a secret is rotated; any valid v1 one will do.
  for (const candidate of signature.split(" ")) {
    const [version, value] = candidate.split(",", 2);
    if (version !== "v1" || value === undefined) continue;
    const given = Buffer.from(value, "base64");
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true, id };
  }
  return { ok: false, problem: "bad_signature" };
}

// Held to what an event may carry (src/domain/storable-text.ts), like every other edge.
const userId = z.string().min(1).max(256).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);
const names = z.array(z.string().min(1).max(128).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE)).max(64);

export const idpWebhookEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("user.claims_changed"),
    data: z.object({ user_id: userId, roles: names, groups: names.default([]) }),
  }),
  z.object({ type: z.literal("user.disabled"), data: z.object({ user_id: userId }) }),
  z.object({ type: z.literal("user.sessions_revoked"), data: z.object({ user_id: userId }) }),
]);
export type IdpWebhookEvent = z.infer<typeof idpWebhookEvent>;

export type WebhookOutcome =
  | { status: 200; body: Record<string, unknown> }
  | { status: 400; detail: string }
  | { status: 401; detail: string; problem: SignatureProblem | "replayed" };

export type IdpWebhooksDeps = {
  /** TESSERA_IDP_WEBHOOK_SECRET. */
  secret: string;
  replay: ReplayStore;
  users: UserService;
  service: SessionService;
  directory?: UserDirectory | undefined;
  clock: Clock;
};

export function createIdpWebhooks(deps: IdpWebhooksDeps) {
  const key = webhookKey(deps.secret);

  async function apply(event: IdpWebhookEvent, context: CommandContext): Promise<Record<string, unknown>> {
    switch (event.type) {
      case "user.claims_changed": {
        const change = await deps.users.changeClaims(
          event.data.user_id,
          { roles: event.data.roles, groups: event.data.groups },
          context,
        );
        return { type: event.type, user_id: event.data.user_id, changed: change.changed };
      }
      case "user.disabled": {
        const known = await deps.directory?.findById(event.data.user_id);
        if (known && !known.disabled) await deps.directory?.setDisabled(event.data.user_id, true);
        const revoked = await deps.service.revokeAll(event.data.user_id, "user_disabled", undefined, context);
        return { type: event.type, user_id: event.data.user_id, revoked };
      }
      case "user.sessions_revoked": {
        const revoked = await deps.service.revokeAll(event.data.user_id, "idp_revoked", undefined, context);
        return { type: event.type, user_id: event.data.user_id, revoked };
      }
      default: {
        const unreachable: never = event;
        return unreachable;
      }
    }
  }

  return {
    /** Verifies, de-duplicates and applies one delivery. `body` is the raw request body, byte for byte. */
    async handle(
      headers: WebhookHeaders,
      body: string,
      request: { ip?: string | undefined; userAgent?: string | undefined },
    ): Promise<WebhookOutcome> {
      const now = deps.clock.now();
      const verified = verifyWebhookSignature(key, headers, body, now);
      if (!verified.ok) return { status: 401, detail: describe(verified.problem), problem: verified.problem };
      let event: IdpWebhookEvent;
      try {
        const parsed = idpWebhookEvent.safeParse(JSON.parse(body));
        if (!parsed.success) return { status: 400, detail: "Unknown or malformed webhook event" };
        event = parsed.data;
      } catch {
        return { status: 400, detail: "Webhook body is not JSON" };
      }
      const replayKey = `webhook\u0000${verified.id}`;
      const claim = await deps.replay.claim(replayKey, String(now), now + REPLAY_MEMORY_MS);
      if (!claim.won)
        return { status: 401, detail: "This webhook-id was already delivered", problem: "replayed" };
      // The id names the delivery, so it also names the command: a redelivery after a failure appends nothing twice.
      const context: CommandContext = {
        commandId: `webhook:${createHash("sha256").update(verified.id).digest("base64url")}`,
        actor: { kind: "idp", id: "webhook" },
        source: "webhook",
        ip: request.ip,
        userAgent: request.userAgent,
      };
      try {
        return { status: 200, body: { received: true, ...(await apply(event, context)) } };
      } catch (error) {
        // Let the sender's retry through: the failure was ours, not a replay.
        await deps.replay.release(replayKey).catch(() => {});
        throw error;
      }
    },
  };
}

export type IdpWebhooks = ReturnType<typeof createIdpWebhooks>;

function describe(problem: SignatureProblem): string {
  switch (problem) {
    case "missing_headers":
      return "webhook-id, webhook-timestamp and webhook-signature are required";
    case "stale_timestamp":
      return "webhook-timestamp is more than five minutes away from now";
    case "bad_signature":
      return "webhook-signature does not match";
    default: {
      const unreachable: never = problem;
      return unreachable;
    }
  }
}
