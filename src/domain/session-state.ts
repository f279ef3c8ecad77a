import type {
  EndReason,
  InvalidationReason,
  RecycleReason,
  SessionBinding,
  SessionEvent,
  SessionKind,
} from "./events.ts";

/** Everything a session knows about itself once created. Instants are epoch milliseconds. */
export type SessionFacts = {
  sessionId: string;
  userId: string;
  username: string;
  kind: SessionKind;
  roles: string[];
  groups: string[];
  scope: string[];
  tokenHash: string;
  refreshTokenHash: string | undefined;
  refreshGeneration: number;
  /** Refresh-token hashes already rotated away; presenting one of them is reuse (RFC 9700). */
  supersededRefreshHashes: string[];
  createdAt: number;
  expiresAt: number;
  maxExpiresAt: number;
  idleTimeoutSeconds: number;
  lastActivityAt: number;
  client: string | undefined;
  ipAddress: string | undefined;
  userAgent: string | undefined;
  binding: SessionBinding;
  metadata: Record<string, unknown>;
  idpSessionId: string | undefined;
};

export type EndedFacts = { endedAt: number };

export type SessionState =
  | { status: "none" }
  | ({ status: "active" } & SessionFacts)
  | ({ status: "expired"; endReason: "expired_absolute" | "expired_idle" } & SessionFacts & EndedFacts)
  | ({ status: "invalidated"; endReason: InvalidationReason } & SessionFacts & EndedFacts)
  | ({ status: "recycled"; endReason: RecycleReason } & SessionFacts & EndedFacts);

export type ExistingSession = Exclude<SessionState, { status: "none" }>;
export type ActiveSession = Extract<SessionState, { status: "active" }>;
export type EndedSession = Exclude<ExistingSession, ActiveSession>;
export type SessionStatus = ExistingSession["status"];

export const initialSessionState = (): SessionState => ({ status: "none" });

export function isEnded(state: SessionState): state is EndedSession {
  return state.status === "expired" || state.status === "invalidated" || state.status === "recycled";
}

export function endReasonOf(state: SessionState): EndReason | undefined {
  return isEnded(state) ? state.endReason : undefined;
}

/** The facts that decide when a session stops being valid. */
export type DeadlineFacts = Pick<SessionFacts, "expiresAt" | "idleTimeoutSeconds" | "lastActivityAt">;

/** The instant idleness ends the session, or undefined when the session has no idle timeout. */
export function idleDeadline(facts: DeadlineFacts): number | undefined {
  return facts.idleTimeoutSeconds > 0 ? facts.lastActivityAt + facts.idleTimeoutSeconds * 1000 : undefined;
}

/** Which deadline, if any, has passed at `now`. The absolute one wins when both have. */
export function overdueCause(facts: DeadlineFacts, now: number): "absolute" | "idle" | undefined {
  if (now >= facts.expiresAt) return "absolute";
  const idle = idleDeadline(facts);
  if (idle !== undefined && now >= idle) return "idle";
  return undefined;
}

const ms = (iso: string) => Date.parse(iso);

export function evolve(state: SessionState, event: SessionEvent): SessionState {
  switch (event.type) {
    case "SessionCreated": {
      const d = event.data;
      return {
        status: "active",
        sessionId: d.sessionId,
        userId: d.userId,
        username: d.username,
        kind: d.kind,
        roles: d.roles,
        groups: d.groups,
        scope: d.scope,
        tokenHash: d.tokenHash,
        refreshTokenHash: d.refreshTokenHash,
        refreshGeneration: 0,
        supersededRefreshHashes: [],
        createdAt: ms(d.createdAt),
        expiresAt: ms(d.expiresAt),
        maxExpiresAt: ms(d.maxExpiresAt),
        idleTimeoutSeconds: d.idleTimeoutSeconds,
        lastActivityAt: ms(d.createdAt),
        client: d.client,
        ipAddress: d.ipAddress,
        userAgent: d.userAgent,
        binding: d.binding,
        metadata: d.metadata,
        idpSessionId: d.idpSessionId,
      };
    }
    case "SessionRenewed":
      if (state.status !== "active") return state;
      return {
        ...state,
        expiresAt: ms(event.data.expiresAt),
        lastActivityAt: Math.max(state.lastActivityAt, ms(event.data.renewedAt)),
      };
    case "SessionTouched":
      if (state.status !== "active") return state;
      return { ...state, lastActivityAt: Math.max(state.lastActivityAt, ms(event.data.at)) };
    case "SessionTokensRotated":
      if (state.status !== "active") return state;
      return {
        ...state,
        refreshTokenHash: event.data.refreshTokenHash,
        refreshGeneration: event.data.refreshGeneration,
        supersededRefreshHashes: [...state.supersededRefreshHashes, event.data.previousRefreshTokenHash],
        lastActivityAt: Math.max(state.lastActivityAt, ms(event.data.rotatedAt)),
      };
    case "SessionRecycled":
      if (state.status !== "active") return state;
      return {
        ...state,
        status: "recycled",
        endReason: event.data.reason,
        endedAt: ms(event.data.recycledAt),
      };
    case "SessionInvalidated":
      if (state.status !== "active") return state;
      return {
        ...state,
        status: "invalidated",
        endReason: event.data.reason,
        endedAt: ms(event.data.invalidatedAt),
      };
    case "SessionExpired":
      if (state.status !== "active") return state;
      return {
        ...state,
        status: "expired",
        endReason: event.data.cause === "idle" ? "expired_idle" : "expired_absolute",
        endedAt: ms(event.data.expiredAt),
      };
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

export function foldSession(events: Iterable<SessionEvent>): SessionState {
  let state = initialSessionState();
  for (const event of events) state = evolve(state, event);
  return state;
}
