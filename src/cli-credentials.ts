import { connectNats } from "./adapters/jetstream/connection.ts";
import {
  createKvCredentialKeyStore,
  credentialKeysBucketName,
} from "./adapters/nats-kv/credential-key-store.ts";
import { masterKeyRing } from "./app/credential-crypto.ts";
import { rewrapAll } from "./app/credential-rewrap.ts";
import { ConfigError, loadConfig } from "./config.ts";

export const CREDENTIALS_USAGE = `Usage: tessera credentials rewrap

  rewrap   re-wrap every session's data key still under a key of TESSERA_CREDENTIALS_PREVIOUS_KEYS under
           TESSERA_CREDENTIALS_KEY, now (the servers' sweep does it every 15 minutes). Prints one JSON line:
           rewrapped, current, unreadable (opens under no configured key: left in place), changed (purged
           or rewritten meanwhile) and under_previous_key (0: the previous keys can be removed).

Run it with the servers' environment (NATS_URL, TESSERA_PREFIX, the credential keys); see
docs/credentials.md, "Rotating the master key".`;

/** `tessera credentials …`; returns the exit code. */
export async function runCredentialsCommand(argv: string[]): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === "help" || command === "--help") {
    console.log(CREDENTIALS_USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== "rewrap" || argv.length > 1) {
    console.error(`Unknown credentials command: ${argv.join(" ")}\n\n${CREDENTIALS_USAGE}`);
    return 2;
  }
  const config = loadConfig(process.env);
  if (config.mode !== "distributed" || config.natsUrl === undefined) {
    throw new ConfigError([
      "NATS_URL: `tessera credentials rewrap` works on the servers' key bucket (embedded mode keeps its keys in the server's memory)",
    ]);
  }
  if (config.credentials.masterKey === undefined) {
    throw new ConfigError(["TESSERA_CREDENTIALS_KEY: the key to re-wrap under is not set"]);
  }
  const ring = masterKeyRing(config.credentials.masterKey, config.credentials.previousKeys);
  const nc = await connectNats(config.natsUrl, "tessera-cli-credentials");
  try {
    const keys = await createKvCredentialKeyStore({
      nc,
      prefix: config.prefix,
      replicas: config.natsReplicas,
    });
    const report = await rewrapAll(keys, ring);
    console.log(
      JSON.stringify({
        bucket: credentialKeysBucketName(config.prefix),
        rewrapped: report.rewrapped,
        current: report.current,
        unreadable: report.unreadable,
        changed: report.changed,
        under_previous_key: report.underPreviousKey,
        unreadable_session_ids: report.unreadableSessionIds,
      }),
    );
    if (report.unreadable > 0) {
      console.error(
        `${report.unreadable} key(s) open under no configured master key: left in place (a key removed too early, or another deployment's); they go when their sessions end`,
      );
    }
    return 0;
  } finally {
    await nc.drain().catch(() => nc.close());
  }
}
