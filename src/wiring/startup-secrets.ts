import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import {
  generateSigningKey,
  loadSigningKey,
  loadVerifyKeys,
  type SigningKey,
  type VerificationKey,
} from "../app/jwt-keys.ts";
import { type Config, ConfigError } from "../config.ts";

/** What the HTTPS server is given: the files' contents, read and checked before anything started. */
export type TlsMaterial = { cert: Buffer; key: Buffer; ca?: Buffer | undefined };

/** The keys and certificates a start needs, loaded from the configuration before any infrastructure. */
export type StartupSecrets = {
  signingKey: SigningKey;
  verifyKeys: VerificationKey[];
  tls: TlsMaterial | undefined;
};

/**
 * Loads and checks the access-token keys and the TLS files, and reports every problem at once as a
 * ConfigError naming the variable (the CLI prints it without a stack and exits 78). It runs before any
 * connection is opened, PGlite started or demo user seeded: a bad key or a missing certificate stops the
 * process in milliseconds with nothing half-started, instead of seconds later with a stack trace.
 */
export async function loadStartupSecrets(config: Config): Promise<StartupSecrets> {
  const problems: string[] = [];
  const tls = config.tls ? readTls(config.tls, problems) : undefined;
  let signingKey: SigningKey | undefined;
  let verifyKeys: VerificationKey[] = [];
  if (config.jwtPrivateKey === undefined && config.mode === "distributed") {
    problems.push(
      "TESSERA_JWT_PRIVATE_KEY: required when NATS_URL/DATABASE_URL are set (every instance must sign with the same key); generate one with: openssl genpkey -algorithm ed25519",
    );
  } else {
    signingKey = await collect(problems, () =>
      config.jwtPrivateKey === undefined ? generateSigningKey() : loadSigningKey(config.jwtPrivateKey),
    );
  }
  if (config.jwtVerifyKeys !== undefined) {
    // Checked even without a usable signing key, so one run reports both variables' problems.
    const signing = signingKey ?? { kid: "" };
    verifyKeys = (await collect(problems, () => loadVerifyKeys(config.jwtVerifyKeys ?? "", signing))) ?? [];
  }
  if (problems.length > 0 || signingKey === undefined) throw new ConfigError(problems);
  return { signingKey, verifyKeys, tls };
}

async function collect<T>(problems: string[], load: () => Promise<T>): Promise<T | undefined> {
  try {
    return await load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    problems.push(...error.problems);
    return undefined;
  }
}

/** Reads each file and checks it holds what its variable promises; the pair must belong together. */
function readTls(files: NonNullable<Config["tls"]>, problems: string[]): TlsMaterial | undefined {
  const cert = readChecked("TESSERA_TLS_CERT_FILE", files.certFile, "a PEM certificate", problems, (pem) => {
    new X509Certificate(pem);
  });
  const key = readChecked(
    "TESSERA_TLS_KEY_FILE",
    files.keyFile,
    "an unencrypted PEM private key",
    problems,
    (pem) => {
      createPrivateKey(pem);
    },
  );
  const ca =
    files.caFile === undefined
      ? undefined
      : readChecked("TESSERA_TLS_CA_FILE", files.caFile, "PEM certificates", problems, (pem) => {
          createSecureContext({ ca: pem });
        });
  if (cert === undefined || key === undefined || (files.caFile !== undefined && ca === undefined))
    return undefined;
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    problems.push(
      `TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE: the key does not belong to the certificate (${reason(error)})`,
    );
    return undefined;
  }
  return { cert, key, ...(ca ? { ca } : {}) };
}

function readChecked(
  variable: string,
  path: string,
  expected: string,
  problems: string[],
  check: (contents: Buffer) => void,
): Buffer | undefined {
  let contents: Buffer;
  try {
    contents = readFileSync(path);
  } catch (error) {
    problems.push(`${variable}: cannot read ${path} (${fileReason(error)})`);
    return undefined;
  }
  try {
    check(contents);
  } catch (error) {
    problems.push(`${variable}: ${path} is not ${expected} (${reason(error)})`);
    return undefined;
  }
  return contents;
}

function fileReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "it is a directory";
  return code ?? reason(error);
}

function reason(error: unknown): string {
  return error instanceof Error ? (error.message.split("\n")[0] ?? "").slice(0, 200) : String(error);
}
