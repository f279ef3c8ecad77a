/**
 * A dependency cannot be reached right now (the read-model database is restarting, say): the same request
 * may well succeed in a moment. Adapters throw it in place of their driver's connection errors so the
 * edges can answer "retry shortly" (REST 503 `service_unavailable`, MCP `NOT_AVAILABLE`) without knowing
 * which driver failed, and without mistaking it for a bug of ours.
 */
export class DependencyUnavailableError extends Error {
  readonly dependency: string;

  constructor(dependency: string, cause: unknown) {
    super(`${dependency} unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "DependencyUnavailableError";
    this.dependency = dependency;
  }
}
