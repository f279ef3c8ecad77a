import { CheckpointConflictError, type ProjectionTarget } from "./runner.ts";

/**
 * How the projections this instance runs are faring: consecutive failures, since when, and the last
 * error's code. The runner retries a failing batch forever (it cannot skip an event and stay correct),
 * so a batch that can never be applied shows up only as a retry log line and a growing lag; this makes it
 * a number that can be read (/readyz details) and alerted on (`tessera_projection_failures_total`).
 *
 * A checkpoint conflict is not a failure: it is how a runner learns that another one (a new lease holder,
 * a rebuild) moved the checkpoint, and it re-seeks at once.
 *
 * Only the instance holding a projection's lease runs it, so only that instance has anything to say about
 * it; the lag (shared checkpoints) is what every instance sees.
 */

export type ProjectionHealthState = {
  name: string;
  /** Failures since the last batch applied (0: the last attempt succeeded or nothing failed yet). */
  consecutiveFailures: number;
  /** When the current run of failures started (epoch ms), if one is running. */
  failingSince: number | undefined;
  lastFailureAt: number | undefined;
  /** SQLSTATE, Node error code or error name of the last failure: never a message (it may quote values). */
  lastErrorCode: string | undefined;
  lastAppliedAt: number | undefined;
  /** Failures since this instance started. */
  totalFailures: number;
};

export interface ProjectionHealth {
  /** `target`, reporting each batch and checkpoint read to this tracker. */
  watch(target: ProjectionTarget): ProjectionTarget;
  /**
   * The runner of `name` stopped here (its lease was released or lost): a run of failures it had is no
   * longer this instance's to report. Total failures stay counted.
   */
  stopped(name: string): void;
  /** Every projection watched here, in the order they were first watched. */
  states(): ProjectionHealthState[];
}

export function createProjectionHealth(now: () => number): ProjectionHealth {
  const states = new Map<string, ProjectionHealthState>();

  function stateOf(name: string): ProjectionHealthState {
    let state = states.get(name);
    if (state === undefined) {
      state = {
        name,
        consecutiveFailures: 0,
        failingSince: undefined,
        lastFailureAt: undefined,
        lastErrorCode: undefined,
        lastAppliedAt: undefined,
        totalFailures: 0,
      };
      states.set(name, state);
    }
    return state;
  }

  function failed(state: ProjectionHealthState, error: unknown) {
    if (error instanceof CheckpointConflictError) return;
    const at = now();
    state.consecutiveFailures += 1;
    state.failingSince ??= at;
    state.lastFailureAt = at;
    state.lastErrorCode = errorCode(error);
    state.totalFailures += 1;
  }

  return {
    watch(target) {
      const state = stateOf(target.name);
      return {
        name: target.name,
        async checkpoint() {
          try {
            return await target.checkpoint();
          } catch (error) {
            failed(state, error);
            throw error;
          }
        },
        async applyBatch(batch) {
          try {
            await target.applyBatch(batch);
          } catch (error) {
            failed(state, error);
            throw error;
          }
          state.consecutiveFailures = 0;
          state.failingSince = undefined;
          state.lastAppliedAt = now();
        },
      };
    },
    stopped(name) {
      const state = states.get(name);
      if (state === undefined) return;
      state.consecutiveFailures = 0;
      state.failingSince = undefined;
    },
    states: () => [...states.values()].map((state) => ({ ...state })),
  };
}

// Codes are short identifiers (SQLSTATE `22P05`, `ECONNREFUSED`, `TypeError`); anything else is not one.
const CODE = /^[A-Za-z0-9_.-]{1,64}$/;

/** A code naming what went wrong, from the error's `code` or its name; never its message. */
export function errorCode(error: unknown): string {
  if (typeof error === "object" && error !== null) {
    const { code, name } = error as { code?: unknown; name?: unknown };
    if (typeof code === "string" && CODE.test(code)) return code;
    if (typeof name === "string" && CODE.test(name)) return name;
  }
  return "error";
}

/**
 * One line for /readyz: each projection this instance runs, `ok` or how long it has been failing. A run
 * of failures makes the instance `degraded`, never unready: the database check already says when Postgres
 * is away, and a projection stuck on one batch is stuck for every instance alike (the read model is
 * shared), so taking instances out of the balancer would not help it and would stop validation, which
 * does not need the read model. The lag and the failure metrics are what to alert on.
 */
export function describeProjectionHealth(states: readonly ProjectionHealthState[], nowMs: number): string {
  if (states.length === 0) return "none run by this instance";
  return states
    .map((state) => {
      if (state.consecutiveFailures === 0) return `${state.name}: ok`;
      const since = state.failingSince ?? nowMs;
      const seconds = Math.max(0, Math.round((nowMs - since) / 1000));
      const last =
        state.lastFailureAt === undefined ? "" : ` at ${new Date(state.lastFailureAt).toISOString()}`;
      return `${state.name}: failing, ${state.consecutiveFailures} consecutive failures over ${seconds} s (last ${state.lastErrorCode ?? "error"}${last})`;
    })
    .join("; ");
}
