import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/**
 * The app-wide per-request work (static response headers, the tracing span, the latency metric), run
 * by ONE synchronous `onRequest` and ONE synchronous `onResponse` hook whatever number of parts take
 * part. Each Fastify hook costs a turn of its hook runner, and an async one a promise and a microtask
 * on top; on the validation path (a few µs of real work) five separate async hooks cost more than the
 * work itself. Parts register plain synchronous steps here instead of adding hooks of their own.
 */

/**
 * What a step may read of the request and the reply: the fast validation path (fast-validate.ts), which
 * answers before Fastify, runs the same steps with just these.
 */
export type LifecycleRequest = Pick<FastifyRequest, "method" | "headers"> & {
  readonly routeOptions: { readonly url?: string | undefined };
};
export type LifecycleReply = Pick<FastifyReply, "statusCode" | "elapsedTime">;
export type LifecycleStep = (request: LifecycleRequest, reply: LifecycleReply) => void;

type Lifecycle = {
  headerNames: string[];
  headerValues: string[];
  onRequest: LifecycleStep[];
  onResponse: LifecycleStep[];
};

const lifecycles = new WeakMap<FastifyInstance, Lifecycle>();

function lifecycleOf(app: FastifyInstance): Lifecycle {
  const known = lifecycles.get(app);
  if (known) return known;
  const lifecycle: Lifecycle = { headerNames: [], headerValues: [], onRequest: [], onResponse: [] };
  lifecycles.set(app, lifecycle);
  const { headerNames, headerValues, onRequest, onResponse } = lifecycle;
  app.addHook("onRequest", (request, reply, done) => {
    // Set first, so a route, an error handler or a plugin that sets the same header later wins.
    for (let i = 0; i < headerNames.length; i++) {
      reply.header(headerNames[i] as string, headerValues[i] as string);
    }
    try {
      for (let i = 0; i < onRequest.length; i++) (onRequest[i] as LifecycleStep)(request, reply);
    } catch (error) {
      done(error as Error);
      return;
    }
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    // Every step runs even if one fails: a broken span must not cost the latency metric.
    let failure: unknown;
    for (let i = 0; i < onResponse.length; i++) {
      try {
        (onResponse[i] as LifecycleStep)(request, reply);
      } catch (error) {
        failure ??= error;
      }
    }
    done(failure as Error | undefined);
  });
  return lifecycle;
}

/**
 * Headers every response carries unless something sets its own value (a route's `cache-control`, the
 * docs UI's content security policy). Set on the reply when the request arrives, so they cost one
 * `reply.header` each and no hook of their own. A later call for the same name replaces the value.
 */
export function addStaticHeaders(app: FastifyInstance, headers: Record<string, string>): void {
  const { headerNames, headerValues } = lifecycleOf(app);
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    const at = headerNames.indexOf(lower);
    if (at === -1) {
      headerNames.push(lower);
      headerValues.push(value);
    } else headerValues[at] = value;
  }
}

/** A synchronous step run when each request arrives (after the static headers are set). */
export function onEachRequest(app: FastifyInstance, step: LifecycleStep): void {
  lifecycleOf(app).onRequest.push(step);
}

/** The app's static headers and steps, for a path that answers without Fastify (fast-validate.ts). */
export function lifecycleParts(app: FastifyInstance): Readonly<Lifecycle> {
  return lifecycleOf(app);
}

/** A synchronous step run once each response has been sent. */
export function onEachResponse(app: FastifyInstance, step: LifecycleStep): void {
  lifecycleOf(app).onResponse.push(step);
}
