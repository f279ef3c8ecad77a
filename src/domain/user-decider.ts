import { invalidCommand } from "./errors.ts";
import type { Claims, InvalidationReason, UserEvent } from "./events.ts";

/** The per-user stream: claims as last recorded, and the instant before which every session is revoked. */
export type UserState =
  | { status: "none"; userId?: undefined }
  | { status: "known"; userId: string; claims: Claims | undefined; revokedBefore: number | undefined };

export type ChangeUserClaims = {
  type: "ChangeUserClaims";
  now: number;
  data: { userId: string; after: Claims };
};
export type RevokeUserSessions = {
  type: "RevokeUserSessions";
  now: number;
  data: { userId: string; reason: InvalidationReason; exceptSessionId?: string | undefined };
};
export type UserCommand = ChangeUserClaims | RevokeUserSessions;

export const initialUserState = (): UserState => ({ status: "none" });

export function evolveUser(state: UserState, event: UserEvent): UserState {
  const base =
    state.status === "known"
      ? state
      : { status: "known" as const, userId: event.data.userId, claims: undefined, revokedBefore: undefined };
  switch (event.type) {
    case "UserClaimsChanged":
      return { ...base, claims: event.data.after };
    case "UserSessionsRevoked":
      return { ...base, revokedBefore: Date.parse(event.data.revokedBefore) };
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

export function decideUser(command: UserCommand, state: UserState): UserEvent[] {
  switch (command.type) {
    case "ChangeUserClaims": {
      const after = normalizeClaims(command.data.after);
      const before = state.status === "known" && state.claims ? state.claims : undefined;
      if (before && sameClaims(before, after)) return [];
      return [
        {
          type: "UserClaimsChanged",
          version: 1,
          data: {
            userId: command.data.userId,
            before: before ?? { roles: [], groups: [] },
            after,
            changedAt: new Date(command.now).toISOString(),
          },
        },
      ];
    }
    case "RevokeUserSessions":
      if (!command.data.userId) throw invalidCommand("user id is required");
      return [
        {
          type: "UserSessionsRevoked",
          version: 1,
          data: {
            userId: command.data.userId,
            revokedBefore: new Date(command.now).toISOString(),
            reason: command.data.reason,
            exceptSessionId: command.data.exceptSessionId,
          },
        },
      ];
    default: {
      const unreachable: never = command;
      return unreachable;
    }
  }
}

export function normalizeClaims(claims: Claims): Claims {
  return { roles: [...new Set(claims.roles)].sort(), groups: [...new Set(claims.groups)].sort() };
}

export function sameClaims(a: Claims, b: Claims): boolean {
  const x = normalizeClaims(a);
  const y = normalizeClaims(b);
  return sameList(x.roles, y.roles) && sameList(x.groups, y.groups);
}

// Element-wise, not joined: ["a\nb"] and ["a", "b"], or [""] and [], are different claims, and a change
// judged "the same" is never recorded, so no session would be recycled for it.
function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}
