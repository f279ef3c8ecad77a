import { expect } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders, bearer } from "../support/tessera.ts";

/** What the token endpoint answers on success (RFC 6749 §5.1). */
export type TokenResponse = {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
  scope: string;
  session_id: string;
};

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

/** POSTs the token endpoint as a form, the way OAuth clients do. */
export function tokenRequest(
  on: Tessera,
  fields: Record<string, string>,
  options: { remoteAddress?: string; headers?: Record<string, string> } = {},
) {
  return on.app.inject({
    method: "POST",
    url: "/v1/auth/token",
    headers: { "content-type": "application/x-www-form-urlencoded", ...options.headers },
    payload: form(fields),
    ...(options.remoteAddress ? { remoteAddress: options.remoteAddress } : {}),
  });
}

export async function login(
  on: Tessera,
  username: string,
  password: string,
  extra: Record<string, string> = {},
  options: { remoteAddress?: string; headers?: Record<string, string> } = {},
): Promise<TokenResponse> {
  const response = await tokenRequest(on, { grant_type: "password", username, password, ...extra }, options);
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as TokenResponse;
}

export async function refresh(on: Tessera, refreshToken: string, extra: Record<string, string> = {}) {
  return tokenRequest(on, { grant_type: "refresh_token", refresh_token: refreshToken, ...extra });
}

/** Creates a password user through the directory (what `tessera users add` does). */
export async function addUser(
  on: Tessera,
  username: string,
  roles: string[] = ["user"],
  password = "pass-word-1",
) {
  const user = await on.auth.directory.create({ username, password, roles, groups: [] });
  return { ...user, password };
}

export function getSession(on: Tessera, sessionId: string, token: string, remoteAddress?: string) {
  return on.app.inject({
    method: "GET",
    url: `/v1/sessions/${sessionId}`,
    headers: bearer(token),
    ...(remoteAddress ? { remoteAddress } : {}),
  });
}

export async function sessionStatus(on: Tessera, sessionId: string) {
  const response = await on.app.inject({
    method: "GET",
    url: `/v1/sessions/${sessionId}`,
    headers: adminHeaders,
  });
  return response.json() as { status: string; end_reason: string | null };
}
