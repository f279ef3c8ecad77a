import { z } from "zod";
import type { SessionView } from "../http/schemas.ts";

/**
 * The session as tools show it: the REST view (same derivation, so an overdue session reads as expired
 * here too) in the camelCase of the Puppeteer-MCP seed, whose `lastAccessedAt` name it keeps.
 */
export const toolSession = z.object({
  id: z.string().describe("Public session id (UUIDv7); never a credential"),
  userId: z.string(),
  username: z.string(),
  kind: z.enum(["web", "api", "mcp"]),
  status: z.enum(["active", "expired", "invalidated", "recycled"]),
  roles: z.array(z.string()),
  groups: z.array(z.string()),
  createdAt: z.string().describe("ISO 8601"),
  expiresAt: z.string().describe("ISO 8601: the absolute deadline"),
  lastAccessedAt: z.string().describe("ISO 8601: last recorded activity"),
  idleExpiresAt: z
    .string()
    .nullable()
    .describe("ISO 8601: when inactivity ends it, if it has an idle timeout"),
  endedAt: z.string().nullable(),
  endReason: z.string().nullable(),
  ipAddress: z.string().nullable(),
  userAgent: z.string().nullable(),
  client: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()),
});
export type ToolSession = z.infer<typeof toolSession>;

export function toToolSession(view: SessionView): ToolSession {
  return {
    id: view.id,
    userId: view.user_id,
    username: view.username,
    kind: view.kind,
    status: view.status,
    roles: view.roles,
    groups: view.groups,
    createdAt: view.created_at,
    expiresAt: view.expires_at,
    lastAccessedAt: view.last_activity_at,
    idleExpiresAt: view.idle_expires_at,
    endedAt: view.ended_at,
    endReason: view.end_reason,
    ipAddress: view.ip_address,
    userAgent: view.user_agent,
    client: view.client,
    metadata: view.metadata,
  };
}
