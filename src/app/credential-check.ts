import { CredentialsError } from "./credential-vault.ts";
import { DependencyUnavailableError } from "./unavailable.ts";

/**
 * "Validated at login" (seed 000): before a session is created with upstream credentials, they are POSTed
 * as JSON to TESSERA_CREDENTIALS_VALIDATE_URL, a small service of the operator's that tries them upstream
 * (Jira, Confluence…). Nothing is written unless it answers 2xx.
 *
 * - 2xx: accepted.
 * - 4xx: the credentials are wrong → CredentialsError `credentials_invalid` (401).
 * - anything else (5xx, a redirect, no answer within the timeout, a refused connection): the checker could
 *   not say → DependencyUnavailableError (503). Telling a user their credentials are wrong because the
 *   upstream is down would send them to fix the wrong thing. Redirects are not followed: a 307 would re-post
 *   the credentials to wherever it points.
 */

export type CredentialChecker = (credentials: Record<string, unknown>) => Promise<void>;

export function createCredentialChecker(options: { url: string; timeoutMs: number }): CredentialChecker {
  const { url, timeoutMs } = options;
  return async (credentials) => {
    let response: Response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(credentials),
        redirect: "manual",
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      // The message names the URL at most, never the body.
      throw new DependencyUnavailableError("credentials validator", error);
    }
    // The body is not needed; reading it releases the connection.
    await response.arrayBuffer().catch(() => undefined);
    if (response.status >= 200 && response.status < 300) return;
    if (response.status >= 400 && response.status < 500) {
      throw new CredentialsError("credentials_invalid", "The upstream credentials were refused");
    }
    throw new DependencyUnavailableError(
      "credentials validator",
      new Error(`credentials validator answered ${response.status}`),
    );
  };
}
