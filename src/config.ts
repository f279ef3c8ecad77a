import { z } from "zod";
import type { SessionPolicy } from "./app/policy.ts";

/**
 * Configuration from the environment (DESIGN §8). A bad value stops start-up with a message naming the
 * variable; nothing is read from the environment anywhere else.
 */

/**
 * A number from the environment; blank (`PORT=` in an env file) counts as unset. Coerced as is, a blank
 * value is 0: a random port, an unlimited session count, a retention of 0 that prunes every ended session.
 */
const envNumber = (schema: z.ZodNumber, fallback: number) =>
  z.preprocess(
    (value) => (typeof value === "string" && value.trim() === "" ? undefined : value),
    z.coerce.number().pipe(schema).default(fallback),
  );
const seconds = (fallback: number) => envNumber(z.number().int().min(0), fallback);
const positiveSeconds = (fallback: number) => envNumber(z.number().int().min(1), fallback);
const flag = z
  .enum(["true", "false", "1", "0", "yes", "no", ""])
  .default("false")
  .transform((value) => value === "true" || value === "1" || value === "yes");
/** A flag that is on unless set to false, 0 or no. */
const flagOn = z
  .enum(["true", "false", "1", "0", "yes", "no", ""])
  .default("true")
  .transform((value) => value !== "false" && value !== "0" && value !== "no");
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === "" ? undefined : value.trim()));

/**
 * The /readyz checks that may take an instance out of rotation (TESSERA_READY_REQUIRES); the others only
 * make it `degraded`. docs/architecture.md ("Readiness") says why only NATS by default.
 */
export const READINESS_CHECKS = ["nats", "database", "projection_lag"] as const;

const environmentSchema = z.object({
  HOST: z.string().min(1).default("127.0.0.1"),
  PORT: envNumber(z.number().int().min(0).max(65535), 8080),
  // Unset (or blank) = no gRPC listener; 0 = any free port.
  TESSERA_GRPC_PORT: z.preprocess(
    (value) => (typeof value === "string" && value.trim() === "" ? undefined : value),
    z.coerce.number().pipe(z.number().int().min(0).max(65535)).optional(),
  ),
  NATS_URL: optionalText,
  DATABASE_URL: optionalText,
  TESSERA_PREFIX: z
    .string()
    .regex(/^[a-zA-Z][a-zA-Z0-9_-]{0,31}$/, "letters, digits, _ or -, starting with a letter, at most 32")
    .default("tessera"),
  TESSERA_ADMIN_KEY: optionalText.pipe(z.string().min(16, "must be at least 16 characters").optional()),
  TESSERA_SESSION_TTL_SECONDS: positiveSeconds(3600),
  TESSERA_MAX_LIFETIME_SECONDS: positiveSeconds(2_592_000),
  TESSERA_IDLE_TIMEOUT_SECONDS: seconds(0),
  TESSERA_MCP_IDLE_TIMEOUT_SECONDS: seconds(1800),
  TESSERA_MCP_SESSION_TTL_SECONDS: positiveSeconds(86_400),
  TESSERA_MCP_ALLOWED_HOSTS: optionalText,
  TESSERA_MCP_ALLOWED_ORIGINS: optionalText,
  TESSERA_CHROMIUM_PATH: optionalText,
  TESSERA_PUBLIC_URL: optionalText,
  TESSERA_TOUCH_INTERVAL_SECONDS: positiveSeconds(60),
  TESSERA_MAX_SESSIONS_PER_USER: seconds(0),
  TESSERA_SESSION_LIMIT_POLICY: z.enum(["reject", "evict_oldest"]).default("reject"),
  TESSERA_BINDING: z.enum(["off", "ua", "ip", "ip+ua"]).default("off"),
  TESSERA_RETENTION_SECONDS: seconds(30 * 24 * 3600),
  TESSERA_ACCESS_TOKEN_TTL_SECONDS: positiveSeconds(900),
  TESSERA_JWT_PRIVATE_KEY: optionalText,
  TESSERA_JWT_VERIFY_KEYS: optionalText,
  TESSERA_JWT_ISSUER: z.string().min(1).default("tessera"),
  TESSERA_JWT_AUDIENCE: z.string().min(1).default("tessera"),
  TESSERA_RATE_LIMIT_WINDOW_SECONDS: positiveSeconds(60),
  TESSERA_RATE_LIMIT_TOKEN_PER_IP: seconds(60),
  TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME: seconds(10),
  TESSERA_RATE_LIMIT_VALIDATE_PER_IP: seconds(36_000),
  TESSERA_IDEMPOTENCY_SECRET: optionalText,
  TESSERA_IDP_ISSUER: optionalText,
  TESSERA_IDP_JWKS_URL: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  TESSERA_IDP_AUDIENCE: optionalText,
  TESSERA_IDP_ROLES_CLAIM: z.string().min(1).default("roles"),
  TESSERA_IDP_GROUPS_CLAIM: z.string().min(1).default("groups"),
  TESSERA_IDP_WEBHOOK_SECRET: optionalText.pipe(
    z.string().min(16, "must be at least 16 characters").optional(),
  ),
  TESSERA_NATS_REPLICAS: envNumber(z.number().int().min(1).max(5), 1),
  TESSERA_MULTIUSER: flag,
  TESSERA_TLS_CERT_FILE: optionalText,
  TESSERA_TLS_KEY_FILE: optionalText,
  TESSERA_TLS_CA_FILE: optionalText,
  TESSERA_BODY_LIMIT_BYTES: envNumber(z.number().int().min(1024).max(10_485_760), 65_536),
  TESSERA_HTTP_FAST_VALIDATE: flagOn,
  TESSERA_INSTANCE_ID: optionalText,
  TESSERA_READY_REQUIRES: z
    .string()
    .default("nats")
    .transform(commaList)
    .pipe(
      z.array(z.enum(READINESS_CHECKS, { message: `each must be one of ${READINESS_CHECKS.join(", ")}` })),
    ),
  TESSERA_CREDENTIALS_KEY: optionalText.pipe(
    z
      .string()
      .refine((value) => credentialsKeyFrom(value) !== undefined, {
        message: "must be 32 bytes in base64 or base64url (e.g. `openssl rand -base64 32`)",
      })
      .optional(),
  ),
  // Checked in loadConfig: each key's problem names its position, never its value.
  TESSERA_CREDENTIALS_PREVIOUS_KEYS: optionalText,
  TESSERA_CREDENTIALS_VALIDATE_URL: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  TESSERA_CREDENTIALS_VALIDATE_TIMEOUT_MS: envNumber(z.number().int().min(1).max(60_000), 5_000),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Environment = z.infer<typeof environmentSchema>;

export type Config = {
  host: string;
  port: number;
  /** The gRPC listener's port (same host, same TLS); undefined = gRPC off. */
  grpcPort: number | undefined;
  mode: "embedded" | "distributed";
  natsUrl: string | undefined;
  databaseUrl: string | undefined;
  prefix: string;
  adminKey: string | undefined;
  policy: SessionPolicy;
  accessTokenTtlSeconds: number;
  jwtPrivateKey: string | undefined;
  /** Extra public keys that verify access tokens (rotation overlap); parsed with the signing key. */
  jwtVerifyKeys: string | undefined;
  auth: {
    jwtIssuer: string;
    jwtAudience: string;
    /** Requests per window; 0 switches a limit off. */
    rateLimit: { windowSeconds: number; tokenPerIp: number; tokenPerUsername: number; validatePerIp: number };
  };
  idempotencySecret: string | undefined;
  /** The trusted external IdP (all three of issuer, JWKS URL and audience), if any. */
  idp:
    | { issuer: string; jwksUrl: string; audience: string; rolesClaim: string; groupsClaim: string }
    | undefined;
  idpWebhookSecret: string | undefined;
  natsReplicas: number;
  multiUser: boolean;
  tls: { certFile: string; keyFile: string; caFile: string | undefined } | undefined;
  bodyLimitBytes: number;
  /** Answer POST /v1/sessions/validate before Fastify where it can (src/adapters/http/fast-validate.ts). */
  fastValidate: boolean;
  instanceId: string | undefined;
  /** The /readyz checks whose failure answers 503; the others answer 200 `degraded`. */
  readyRequires: ReadonlyArray<(typeof READINESS_CHECKS)[number]>;
  logLevel: Environment["LOG_LEVEL"];
  /** Upstream credentials kept for a session's life (docs/credentials.md). */
  credentials: {
    /** The master key that wraps every session's data key; unset: generated per process (embedded only). */
    masterKey: Buffer | undefined;
    /** Older master keys (TESSERA_CREDENTIALS_PREVIOUS_KEYS): they open what they wrapped, never wrap. */
    previousKeys: Buffer[];
    validateUrl: string | undefined;
    validateTimeoutMs: number;
  };
  /**
   * TESSERA_PUBLIC_URL without a trailing slash (`https://tessera.example.com`, or with a path prefix):
   * where clients reach this service, the base of every session URL.
   */
  publicUrl: string | undefined;
  mcp: {
    sessionTtlSeconds: number;
    allowedHosts: string[];
    allowedOrigins: string[];
    chromiumPath: string | undefined;
  };
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = environmentSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`));
  }
  const e = parsed.data;
  const problems: string[] = [];
  if ((e.NATS_URL === undefined) !== (e.DATABASE_URL === undefined)) {
    problems.push(
      "NATS_URL and DATABASE_URL: set both for distributed mode, or neither for embedded mode (one alone is ambiguous)",
    );
  }
  if (
    e.TESSERA_MULTIUSER &&
    (e.TESSERA_TLS_CERT_FILE === undefined || e.TESSERA_TLS_KEY_FILE === undefined)
  ) {
    problems.push(
      "TESSERA_MULTIUSER=true requires TLS: set TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE (plain HTTP is only for local single-user use)",
    );
  }
  const idpSet = [e.TESSERA_IDP_ISSUER, e.TESSERA_IDP_JWKS_URL, e.TESSERA_IDP_AUDIENCE].filter(
    (v) => v !== undefined,
  );
  if (idpSet.length !== 0 && idpSet.length !== 3) {
    problems.push(
      "TESSERA_IDP_ISSUER, TESSERA_IDP_JWKS_URL and TESSERA_IDP_AUDIENCE: give all three or none",
    );
  }
  if ((e.TESSERA_TLS_CERT_FILE === undefined) !== (e.TESSERA_TLS_KEY_FILE === undefined)) {
    problems.push("TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE: give both or neither");
  }
  if (e.TESSERA_GRPC_PORT !== undefined && e.TESSERA_GRPC_PORT !== 0 && e.TESSERA_GRPC_PORT === e.PORT) {
    problems.push("TESSERA_GRPC_PORT: must differ from PORT (gRPC has its own listener)");
  }
  if (e.TESSERA_SESSION_TTL_SECONDS > e.TESSERA_MAX_LIFETIME_SECONDS) {
    problems.push("TESSERA_SESSION_TTL_SECONDS: must not exceed TESSERA_MAX_LIFETIME_SECONDS");
  }
  const publicUrl = parsePublicUrl(e.TESSERA_PUBLIC_URL, e.TESSERA_MULTIUSER, problems);
  const masterKey =
    e.TESSERA_CREDENTIALS_KEY === undefined ? undefined : credentialsKeyFrom(e.TESSERA_CREDENTIALS_KEY);
  const previousKeys = previousCredentialsKeys(e.TESSERA_CREDENTIALS_PREVIOUS_KEYS, masterKey, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  const distributed = e.NATS_URL !== undefined;
  return {
    host: e.HOST,
    port: e.PORT,
    grpcPort: e.TESSERA_GRPC_PORT,
    mode: distributed ? "distributed" : "embedded",
    natsUrl: e.NATS_URL,
    databaseUrl: e.DATABASE_URL,
    prefix: e.TESSERA_PREFIX,
    adminKey: e.TESSERA_ADMIN_KEY,
    policy: {
      defaultTtlSeconds: e.TESSERA_SESSION_TTL_SECONDS,
      maxLifetimeSeconds: e.TESSERA_MAX_LIFETIME_SECONDS,
      idleTimeoutSeconds: e.TESSERA_IDLE_TIMEOUT_SECONDS,
      mcpIdleTimeoutSeconds: e.TESSERA_MCP_IDLE_TIMEOUT_SECONDS,
      touchIntervalSeconds: e.TESSERA_TOUCH_INTERVAL_SECONDS,
      maxSessionsPerUser: e.TESSERA_MAX_SESSIONS_PER_USER,
      limitPolicy: e.TESSERA_SESSION_LIMIT_POLICY,
      binding: e.TESSERA_BINDING,
      retentionSeconds: e.TESSERA_RETENTION_SECONDS,
    },
    accessTokenTtlSeconds: e.TESSERA_ACCESS_TOKEN_TTL_SECONDS,
    jwtPrivateKey: e.TESSERA_JWT_PRIVATE_KEY,
    jwtVerifyKeys: e.TESSERA_JWT_VERIFY_KEYS,
    auth: {
      jwtIssuer: e.TESSERA_JWT_ISSUER,
      jwtAudience: e.TESSERA_JWT_AUDIENCE,
      rateLimit: {
        windowSeconds: e.TESSERA_RATE_LIMIT_WINDOW_SECONDS,
        tokenPerIp: e.TESSERA_RATE_LIMIT_TOKEN_PER_IP,
        tokenPerUsername: e.TESSERA_RATE_LIMIT_TOKEN_PER_USERNAME,
        validatePerIp: e.TESSERA_RATE_LIMIT_VALIDATE_PER_IP,
      },
    },
    idempotencySecret: e.TESSERA_IDEMPOTENCY_SECRET,
    idp:
      e.TESSERA_IDP_ISSUER && e.TESSERA_IDP_JWKS_URL && e.TESSERA_IDP_AUDIENCE
        ? {
            issuer: e.TESSERA_IDP_ISSUER,
            jwksUrl: e.TESSERA_IDP_JWKS_URL,
            audience: e.TESSERA_IDP_AUDIENCE,
            rolesClaim: e.TESSERA_IDP_ROLES_CLAIM,
            groupsClaim: e.TESSERA_IDP_GROUPS_CLAIM,
          }
        : undefined,
    idpWebhookSecret: e.TESSERA_IDP_WEBHOOK_SECRET,
    natsReplicas: e.TESSERA_NATS_REPLICAS,
    multiUser: e.TESSERA_MULTIUSER,
    tls:
      e.TESSERA_TLS_CERT_FILE && e.TESSERA_TLS_KEY_FILE
        ? {
            certFile: e.TESSERA_TLS_CERT_FILE,
            keyFile: e.TESSERA_TLS_KEY_FILE,
            caFile: e.TESSERA_TLS_CA_FILE,
          }
        : undefined,
    bodyLimitBytes: e.TESSERA_BODY_LIMIT_BYTES,
    fastValidate: e.TESSERA_HTTP_FAST_VALIDATE,
    instanceId: e.TESSERA_INSTANCE_ID,
    readyRequires: e.TESSERA_READY_REQUIRES,
    logLevel: e.LOG_LEVEL,
    credentials: {
      masterKey,
      previousKeys,
      validateUrl: e.TESSERA_CREDENTIALS_VALIDATE_URL,
      validateTimeoutMs: e.TESSERA_CREDENTIALS_VALIDATE_TIMEOUT_MS,
    },
    publicUrl: publicUrl?.href,
    mcp: {
      sessionTtlSeconds: e.TESSERA_MCP_SESSION_TTL_SECONDS,
      // Session URLs name the public host, so /mcp must accept it in Host (DNS-rebinding check).
      allowedHosts: [...commaList(e.TESSERA_MCP_ALLOWED_HOSTS), ...(publicUrl ? [publicUrl.hostname] : [])],
      allowedOrigins: commaList(e.TESSERA_MCP_ALLOWED_ORIGINS),
      chromiumPath: e.TESSERA_CHROMIUM_PATH,
    },
  };
}

/** A 32-byte key in base64 or base64url (padding optional), or undefined when it is not one. */
function credentialsKeyFrom(value: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) return undefined;
  const key = Buffer.from(value, "base64");
  return key.length === 32 ? key : undefined;
}

/**
 * TESSERA_CREDENTIALS_PREVIOUS_KEYS: master keys from before a rotation, comma-separated, each in the format
 * of TESSERA_CREDENTIALS_KEY. Like TESSERA_JWT_VERIFY_KEYS, a bad key is reported by its position (never
 * its value), and so is a repeat, including the current key itself (it always opens; do not list it).
 */
function previousCredentialsKeys(value: string | undefined, current: Buffer | undefined, problems: string[]) {
  const items = commaList(value);
  if (items.length === 0) return [];
  const variable = "TESSERA_CREDENTIALS_PREVIOUS_KEYS";
  if (current === undefined) {
    problems.push(`${variable}: needs TESSERA_CREDENTIALS_KEY (the key new data keys are wrapped under)`);
    return [];
  }
  const keys: Buffer[] = [];
  items.forEach((item, index) => {
    const position = `key ${index + 1} of ${items.length}`;
    const key = credentialsKeyFrom(item);
    if (key === undefined) {
      problems.push(`${variable}: ${position} must be 32 bytes in base64 or base64url`);
    } else if (key.equals(current)) {
      problems.push(
        `${variable}: ${position} is TESSERA_CREDENTIALS_KEY itself (it always opens; do not list it)`,
      );
    } else if (keys.some((earlier) => earlier.equals(key))) {
      problems.push(`${variable}: ${position} repeats an earlier key`);
    } else keys.push(key);
  });
  return keys;
}

function commaList(value: string | undefined): string[] {
  return (value ?? "").split(",").flatMap((item) => (item.trim() === "" ? [] : [item.trim()]));
}

/**
 * The public base URL: http(s), no credentials, query or fragment (session URLs are built by appending to
 * it). A session URL carries a bearer credential, so multi-user mode insists on https.
 */
function parsePublicUrl(value: string | undefined, multiUser: boolean, problems: string[]) {
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push("TESSERA_PUBLIC_URL: not a URL (e.g. https://tessera.example.com)");
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    problems.push("TESSERA_PUBLIC_URL: must be an http or https URL");
  } else if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    problems.push("TESSERA_PUBLIC_URL: must not hold credentials, a query or a fragment");
  } else if (multiUser && url.protocol !== "https:") {
    problems.push(
      "TESSERA_PUBLIC_URL: must be https with TESSERA_MULTIUSER=true (session URLs carry a credential)",
    );
  } else {
    const href = url.href.replace(/\/+$/, "");
    return { href, hostname: url.hostname };
  }
  return undefined;
}
