import { expect } from "vitest";
import type { Tessera } from "../../src/main.ts";
import { adminHeaders } from "../support/tessera.ts";

/** What the transport tests check on an instance after an operation, the same way for WebSocket and gRPC. */

/** SessionCreated events of `userId` appended after `after` (touches and other users' events aside). */
export async function createdSince(on: Tessera, after: number, userId: string): Promise<number> {
  let count = 0;
  const last = await on.log.lastPosition();
  for (let position = after + 1; position <= last; position++) {
    const event = await on.log.readAt(position);
    if (event?.type === "SessionCreated" && event.data.userId === userId) count++;
  }
  return count;
}

export async function sessionOf(on: Tessera, id: string) {
  const response = await on.app.inject({ method: "GET", url: `/v1/sessions/${id}`, headers: adminHeaders });
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as { status: string; end_reason: string | null };
}
