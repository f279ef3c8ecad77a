import { HttpProblem } from "../http/problem.ts";
import type { SessionView } from "../http/schemas.ts";

/**
 * Between protobuf messages (decoded by proto-loader with keepCase, so REST's snake_case names) and the
 * REST shapes the session operations take and return. Unset proto3 fields arrive as undefined; an empty
 * string or list counts as unset, since proto3 cannot tell them apart on the wire.
 */

type Message = Record<string, unknown>;

/** The REST body/query for an operation: unset fields dropped, JSON fields parsed. */
export function restParams(request: Message, fields: readonly string[]): Message {
  const params: Message = {};
  for (const field of fields) {
    const value = request[field];
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value) && value.length === 0) continue;
    if (field === "metadata_json") {
      params.metadata = parseJsonObject(value as string);
      continue;
    }
    params[field] = value;
  }
  return params;
}

function parseJsonObject(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpProblem(400, "invalid_request", "metadata_json must be a JSON object");
  }
}

/** REST's session view as a `Session` message (nulls are unset optional fields). */
export function sessionMessage(view: SessionView): Message {
  const message: Message = {
    id: view.id,
    user_id: view.user_id,
    username: view.username,
    kind: view.kind,
    status: view.status,
    roles: view.roles,
    groups: view.groups,
    created_at: view.created_at,
    last_activity_at: view.last_activity_at,
    expires_at: view.expires_at,
    metadata_json: JSON.stringify(view.metadata),
  };
  for (const field of [
    "client",
    "ip_address",
    "user_agent",
    "idle_expires_at",
    "ended_at",
    "end_reason",
  ] as const) {
    const value = view[field];
    if (value !== null) message[field] = value;
  }
  return message;
}
