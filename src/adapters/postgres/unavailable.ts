/**
 * Which node-postgres failures mean "the server cannot be reached or is going away" rather than "this
 * statement is wrong". Only those become DependencyUnavailableError; everything else (a constraint
 * violation, a syntax error) stays a bug that surfaces as such.
 */

/** Socket failures: nothing listens, the peer reset or vanished, the name does not resolve. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs of a server that is shutting down, starting up, crashed or full: 57P01 admin_shutdown (what
 * `pg_ctl stop -m fast` sends every backend), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting
 * up or shutting down), 53300 too_many_connections; class 08 is connection_exception.
 */
const SERVER_STATES = new Set(["57P01", "57P02", "57P03", "53300"]);

/**
 * node-postgres reports a lost connection, a client it already marked broken, and its own connect
 * timeouts without any code, so their (stable, library-owned) messages are all there is to go by.
 */
const DRIVER_MESSAGES = [
  "Connection terminated",
  "Client has encountered a connection error and is not queryable",
  "timeout exceeded when trying to connect",
];

export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") {
    if (NETWORK_CODES.has(code) || SERVER_STATES.has(code) || code.startsWith("08")) return true;
  }
  // A connection refused on every address of a host name arrives as one AggregateError.
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.every((inner) => isDatabaseUnavailable(inner));
  }
  return DRIVER_MESSAGES.some((message) => error.message.startsWith(message));
}
