import type { BindingMode } from "../domain/events.ts";

/** Session policies in force (DESIGN §6, defaults from the seeds). */
export type SessionPolicy = {
  defaultTtlSeconds: number;
  maxLifetimeSeconds: number;
  /** 0 = no idle timeout for ordinary sessions. */
  idleTimeoutSeconds: number;
  mcpIdleTimeoutSeconds: number;
  touchIntervalSeconds: number;
  /** 0 = unlimited. */
  maxSessionsPerUser: number;
  limitPolicy: "reject" | "evict_oldest";
  binding: BindingMode;
  /** How long ended sessions stay in the read model before cleanup prunes them. */
  retentionSeconds: number;
};

export const defaultPolicy: SessionPolicy = {
  defaultTtlSeconds: 3600,
  maxLifetimeSeconds: 2_592_000,
  idleTimeoutSeconds: 0,
  mcpIdleTimeoutSeconds: 1800,
  touchIntervalSeconds: 60,
  maxSessionsPerUser: 0,
  limitPolicy: "reject",
  binding: "off",
  retentionSeconds: 30 * 24 * 3600,
};
