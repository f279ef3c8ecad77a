import type { Actor } from "../domain/events.ts";

/**
 * Who is calling and what they may do. Roles map to permissions; scopes (from a JWT) only narrow them.
 * viewer: read own sessions. user (or no role): read, renew and end own. admin: everything, for everyone.
 */
export type Permission = "sessions:read" | "sessions:write" | "admin:sessions";

export type Principal =
  | { kind: "admin"; actor: Actor; via: "admin_key" }
  | {
      kind: "user";
      actor: Actor;
      via: "session_token" | "jwt";
      userId: string;
      username: string;
      roles: string[];
      groups: string[];
      sessionId: string;
      permissions: ReadonlySet<Permission>;
      /** The IdP sign-in (`sid`) of the IdP token that authenticated this caller, if it carried one. */
      idpSessionId?: string | undefined;
    };

type UserPrincipal = Extract<Principal, { kind: "user" }>;

/** The caller a live session stands for: its user, roles and groups, with the permissions it was granted. */
export function sessionPrincipal(
  session: Pick<UserPrincipal, "userId" | "username" | "roles" | "groups" | "sessionId">,
  via: UserPrincipal["via"],
  permissions: ReadonlySet<Permission>,
): UserPrincipal {
  return {
    kind: "user",
    actor: { kind: "user", id: session.userId },
    via,
    userId: session.userId,
    username: session.username,
    roles: session.roles,
    groups: session.groups,
    sessionId: session.sessionId,
    permissions,
  };
}

const ALL: Permission[] = ["sessions:read", "sessions:write", "admin:sessions"];

export function permissionsFor(
  roles: readonly string[],
  scope: readonly string[] | undefined,
): Set<Permission> {
  const granted = new Set<Permission>();
  if (roles.includes("admin")) for (const p of ALL) granted.add(p);
  if (roles.includes("user") || roles.length === 0) {
    granted.add("sessions:read");
    granted.add("sessions:write");
  }
  if (roles.includes("viewer")) granted.add("sessions:read");
  if (scope === undefined || scope.length === 0) return granted;
  // A scope narrows: a token scoped to sessions:read cannot write even if the role could.
  const scoped = new Set<Permission>();
  for (const p of granted)
    if (scope.includes(p) || (p !== "admin:sessions" && scope.includes("admin:sessions"))) scoped.add(p);
  return scoped;
}

export function can(principal: Principal, permission: Permission): boolean {
  return principal.kind === "admin" || principal.permissions.has(permission);
}

export function isAdmin(principal: Principal): boolean {
  return can(principal, "admin:sessions");
}

/** May this principal act (with `permission`) on a session owned by `ownerId`? */
export function canActOn(principal: Principal, ownerId: string, permission: Permission): boolean {
  if (isAdmin(principal)) return true;
  return principal.kind === "user" && principal.userId === ownerId && can(principal, permission);
}
