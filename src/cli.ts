import { startTelemetry } from "./adapters/otel/sdk.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { createTessera } from "./main.ts";
import { loadStartupSecrets } from "./wiring/startup-secrets.ts";

const USAGE = `Usage: tessera <command>

Commands:
  serve            run the HTTP API (embedded without NATS_URL/DATABASE_URL)
  mcp --stdio      serve the MCP tools over stdio (see docs/mcp.md)
  replay [name]    rebuild Postgres read models from the log and swap them in (see docs/time.md)
  users ...        manage password users: add, set-password, set-roles, disable (see docs/auth.md)
  credentials ...  rewrap: re-wrap credential keys under the current master key (see docs/credentials.md)
  help             this text

Configuration comes from environment variables; see README.md.`;

/** Entry point of the `tessera` binary; returns the process exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const [command = "help"] = argv;
  try {
    switch (command) {
      case "serve":
        return await serve();
      case "mcp":
        return await (await import("./cli-mcp.ts")).runMcpCli(argv.slice(1));
      case "replay":
        return await (await import("./cli-replay.ts")).runReplay(argv.slice(1));
      case "users":
        return await (await import("./cli-users.ts")).runUsersCommand(argv.slice(1));
      case "credentials":
        return await (await import("./cli-credentials.ts")).runCredentialsCommand(argv.slice(1));
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return 0;
      default:
        console.error(`Unknown command: ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 78; // EX_CONFIG
    }
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    return 1;
  }
}

async function serve(): Promise<number> {
  const config = loadConfig();
  if (config.multiUser && !config.tls) {
    throw new ConfigError([
      "TESSERA_MULTIUSER=true requires TLS: set TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE (plain HTTP is only for local single-user use)",
    ]);
  }
  // Keys and TLS files are checked before telemetry or any connection starts (exit 78, nothing to undo).
  const secrets = await loadStartupSecrets(config);
  const stopTelemetry = startTelemetry();
  const tessera = await createTessera(config, { secrets });
  if (!config.tls)
    tessera.logger.warn(
      "Serving plain HTTP: fine for local single-user use, never for multi-user deployments",
    );
  const address = await tessera.app.listen({ host: config.host, port: config.port });
  tessera.logger.info({ address, mode: config.mode, prefix: config.prefix }, "tessera listening");
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  tessera.logger.info("shutting down");
  await tessera.close();
  await stopTelemetry?.();
  return 0;
}
