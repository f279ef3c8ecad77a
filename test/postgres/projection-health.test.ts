import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { createInMemoryEventLog } from "../../src/adapters/memory/event-log.ts";
import { registerProjectionHealthMetrics } from "../../src/adapters/metrics/projection-health-metrics.ts";
import type { RecordedEvent } from "../../src/domain/events.ts";
import type { EventLog } from "../../src/domain/ports.ts";
import {
  createProjectionHealth,
  describeProjectionHealth,
  errorCode,
} from "../../src/projections/projection-health.ts";
import {
  CheckpointConflictError,
  type ProjectionTarget,
  runProjection,
} from "../../src/projections/runner.ts";
import { eventLog } from "./fixtures.ts";

/**
 * A projection that keeps failing the same batch is retried forever by its runner; the health tracker
 * makes that visible (consecutive failures, since when, the last error's code) to /readyz and /metrics,
 * and a batch that lands again clears it.
 */

class PgError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/** A target whose batches fail while `failing` is set; it remembers the positions it applied. */
function flakyTarget(name: string) {
  const state = { failing: true, applied: [] as number[], conflictOnce: false };
  const target: ProjectionTarget = {
    name,
    async checkpoint() {
      return state.applied.at(-1) ?? 0;
    },
    async applyBatch(batch: RecordedEvent[]) {
      if (state.conflictOnce) {
        state.conflictOnce = false;
        throw new CheckpointConflictError(name, 0, 1);
      }
      // The message quotes the value, as Postgres messages may: it must never be reported.
      if (state.failing) throw new PgError("22P05", 'unsupported Unicode escape sequence "secret-value"');
      state.applied.push(...batch.map((event) => event.position));
    },
  };
  return { target, state };
}

async function appendOne(log: EventLog) {
  const { metadata, stream, position: _position, ...event } = eventLog().created();
  await log.append(stream, event, metadata, { expectedVersion: 0, messageId: metadata.commandId });
}

const until = async (condition: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe("projection health", () => {
  const controllers: AbortController[] = [];
  afterEach(() => {
    for (const controller of controllers.splice(0)) controller.abort();
  });

  it("counts consecutive failures of a stuck batch, reports code and time, and clears once it lands", async () => {
    let now = Date.parse("2031-01-01T00:00:00.000Z");
    const health = createProjectionHealth(() => now);
    const registry = new Registry();
    registerProjectionHealthMetrics(registry, health);
    const log = createInMemoryEventLog();
    await appendOne(log);
    const { target, state } = flakyTarget("sessions");
    const controller = new AbortController();
    controllers.push(controller);
    const running = runProjection({
      log,
      target: health.watch(target),
      signal: controller.signal,
      backoff: { min: 1, max: 2 },
    });

    await until(() => (health.states()[0]?.consecutiveFailures ?? 0) >= 3);
    const stuck = health.states()[0];
    expect(stuck).toMatchObject({ name: "sessions", lastErrorCode: "22P05", failingSince: now });
    now += 90_000;
    const line = describeProjectionHealth(health.states(), now);
    expect(line).toMatch(/^sessions: failing, \d+ consecutive failures over 90 s \(last 22P05 at 2031-/);
    expect(line).not.toContain("secret-value");

    const metrics = await registry.metrics();
    expect(metrics).toMatch(/tessera_projection_failures_total\{projection="sessions"\} [1-9]\d*/);
    expect(metrics).toMatch(/tessera_projection_consecutive_failures\{projection="sessions"\} [1-9]\d*/);
    expect(metrics).not.toContain("secret-value");

    state.failing = false;
    await until(() => state.applied.length === 1);
    await until(() => health.states()[0]?.consecutiveFailures === 0);
    expect(health.states()[0]).toMatchObject({ failingSince: undefined, lastAppliedAt: now });
    expect(health.states()[0]?.totalFailures).toBeGreaterThanOrEqual(3);
    expect(describeProjectionHealth(health.states(), now)).toBe("sessions: ok");
    const after = await registry.metrics();
    expect(after).toContain('tessera_projection_consecutive_failures{projection="sessions"} 0');
    // The counter never goes back.
    const total = Number(/tessera_projection_failures_total\{projection="sessions"\} (\d+)/.exec(after)?.[1]);
    expect(total).toBe(health.states()[0]?.totalFailures);

    controller.abort();
    await running;
  });

  it("does not count a checkpoint conflict (a lease handover or rebuild), and forgets a run when stopped", async () => {
    const health = createProjectionHealth(() => 0);
    const { target, state } = flakyTarget("audit");
    const watched = health.watch(target);
    state.failing = false;
    state.conflictOnce = true;
    await expect(watched.applyBatch([])).rejects.toBeInstanceOf(CheckpointConflictError);
    expect(health.states()[0]).toMatchObject({ consecutiveFailures: 0, totalFailures: 0 });

    state.failing = true;
    await expect(watched.applyBatch([])).rejects.toThrow();
    expect(health.states()[0]).toMatchObject({ consecutiveFailures: 1, totalFailures: 1 });
    health.stopped("audit");
    expect(health.states()[0]).toMatchObject({ consecutiveFailures: 0, totalFailures: 1 });
    expect(describeProjectionHealth([], 0)).toBe("none run by this instance");
  });

  it("names errors by code or name, never by message", () => {
    expect(errorCode(new PgError("57P01", "terminating connection"))).toBe("57P01");
    expect(errorCode(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }))).toBe(
      "ECONNREFUSED",
    );
    expect(errorCode(new TypeError("x"))).toBe("TypeError");
    expect(errorCode(Object.assign(new Error("m"), { code: "has spaces and a \u0000" }))).toBe("Error");
    expect(errorCode("a string")).toBe("error");
  });
});
