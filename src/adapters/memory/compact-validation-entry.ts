import type { BindingMode, Claims, EndReason, SessionBinding, SessionKind } from "../../domain/events.ts";
import type { SessionStatus } from "../../domain/session-state.ts";
import type { Revocation, UserValidationEntry, ValidationEntry } from "../../projections/validation-entry.ts";

/**
 * The in-memory form of validation entries. Every instance holds one entry per live session, so the form
 * is chosen for size and for the validation hot path: one fixed object shape (a class, so V8 keeps the
 * fields in-object and lookups stay monomorphic), small vocabularies mapped to constant strings, and
 * role/group/scope lists shared between sessions that have the same ones. Shared lists are frozen, so a
 * caller that tried to mutate one would fail loudly instead of changing other sessions.
 */

const EMPTY: string[] = Object.freeze([]) as unknown as string[];
const EMPTY_REVOCATIONS: Revocation[] = Object.freeze([]) as unknown as Revocation[];
const NO_BINDING: SessionBinding = Object.freeze({ mode: "off" as const });

/** Bounded so that a flood of unique lists cannot grow the table without limit; past it, lists are kept as is. */
const MAX_INTERNED_LISTS = 4096;
const internedLists = new Map<string, string[]>();
const internedStrings = new Map<string, string>();
const MAX_INTERNED_STRINGS = 256;

function internString<T extends string>(value: T): T {
  const known = internedStrings.get(value);
  if (known !== undefined) return known as T;
  if (internedStrings.size < MAX_INTERNED_STRINGS) internedStrings.set(value, value);
  return value;
}

/** One shared frozen copy per distinct list (roles, groups, scope are few distinct values across many sessions). */
export function internList(list: readonly string[]): string[] {
  if (list.length === 0) return EMPTY;
  const key = list.join("\u0000");
  const known = internedLists.get(key);
  if (known) return known;
  const copy = Object.freeze(list.map(internString)) as unknown as string[];
  if (internedLists.size < MAX_INTERNED_LISTS) internedLists.set(key, copy);
  return copy;
}

function compactBinding(binding: SessionBinding | undefined): SessionBinding {
  if (!binding || (binding.mode === "off" && binding.ip === undefined && binding.userAgent === undefined)) {
    return NO_BINDING;
  }
  const compact: SessionBinding = { mode: internString<BindingMode>(binding.mode) };
  if (binding.ip !== undefined) compact.ip = binding.ip;
  if (binding.userAgent !== undefined) compact.userAgent = binding.userAgent;
  return compact;
}

class CompactValidationEntry implements ValidationEntry {
  sessionId: string;
  userId: string;
  username: string;
  kind: SessionKind;
  status: SessionStatus;
  endReason: EndReason | undefined;
  tokenHash: string;
  refreshGeneration: number;
  roles: string[];
  groups: string[];
  scope: string[];
  createdAt: number;
  expiresAt: number;
  idleTimeoutSeconds: number;
  lastActivityAt: number;
  binding: SessionBinding;
  idpSessionId: string | undefined;
  position: number;

  constructor(e: ValidationEntry) {
    this.sessionId = e.sessionId;
    this.userId = e.userId;
    this.username = e.username;
    this.kind = internString(e.kind);
    this.status = internString(e.status);
    this.endReason = e.endReason === undefined ? undefined : internString(e.endReason);
    this.tokenHash = e.tokenHash;
    this.refreshGeneration = e.refreshGeneration;
    this.roles = internList(e.roles ?? EMPTY);
    this.groups = internList(e.groups ?? EMPTY);
    this.scope = internList(e.scope ?? EMPTY);
    this.createdAt = e.createdAt;
    this.expiresAt = e.expiresAt;
    this.idleTimeoutSeconds = e.idleTimeoutSeconds;
    this.lastActivityAt = e.lastActivityAt;
    this.binding = compactBinding(e.binding);
    this.idpSessionId = e.idpSessionId;
    this.position = e.position;
  }
}

/** The compact form of an entry; an entry already in compact form is returned as is (no copy). */
export function compactValidationEntry(entry: ValidationEntry): ValidationEntry {
  return entry instanceof CompactValidationEntry ? entry : new CompactValidationEntry(entry);
}

function compactClaims(claims: Claims | undefined): Claims | undefined {
  if (!claims) return undefined;
  return { roles: internList(claims.roles ?? EMPTY), groups: internList(claims.groups ?? EMPTY) };
}

export function compactUserValidationEntry(entry: UserValidationEntry): UserValidationEntry {
  return {
    userId: entry.userId,
    revocations: entry.revocations && entry.revocations.length > 0 ? entry.revocations : EMPTY_REVOCATIONS,
    claims: compactClaims(entry.claims),
    claimsChangedAt: typeof entry.claimsChangedAt === "number" ? entry.claimsChangedAt : undefined,
    position: entry.position,
  };
}

/**
 * Minimal structural check for entries read from outside the process (KV values): enough that a foreign or
 * corrupt value cannot put a malformed object on the validation path.
 */
export function isValidationEntryLike(value: unknown): value is ValidationEntry {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.sessionId === "string" &&
    typeof v.userId === "string" &&
    typeof v.tokenHash === "string" &&
    typeof v.status === "string" &&
    typeof v.position === "number" &&
    typeof v.createdAt === "number" &&
    typeof v.expiresAt === "number" &&
    Array.isArray(v.roles) &&
    Array.isArray(v.groups)
  );
}

export function isUserValidationEntryLike(value: unknown): value is UserValidationEntry {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.userId === "string" && typeof v.position === "number" && Array.isArray(v.revocations);
}
