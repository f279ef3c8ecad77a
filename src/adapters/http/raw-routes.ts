import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from "node:https";
import type { FastifyInstance, FastifyServerFactory } from "fastify";

/**
 * Routes answered before Fastify sees the request, for the one route whose whole work is smaller than
 * Fastify's per-request machinery (POST /v1/sessions/validate, see fast-validate.ts). A raw route takes
 * the request or hands it to Fastify (`next`), even after it has read the body: whatever it cannot answer
 * exactly as the Fastify route would goes through the Fastify route.
 */
export type RawRoute = (request: IncomingMessage, response: ServerResponse, next: () => void) => void;

type RawRoutes = { byKey: Map<string, RawRoute>; closing: boolean };
type ServerSettings = {
  keepAliveTimeout?: number;
  requestTimeout?: number;
  connectionTimeout?: number;
  maxRequestsPerSocket?: number | null;
};

const registries = new WeakMap<FastifyInstance, RawRoutes>();

/**
 * The server factory for `Fastify({ serverFactory })`: Fastify's own HTTP/1 server (same timeouts), whose
 * request listener first looks for a raw route. Call `attach` with the app once it exists.
 */
export function rawRoutesServerFactory(https: HttpsOptions | undefined) {
  const routes: RawRoutes = { byKey: new Map(), closing: false };
  const serverFactory: FastifyServerFactory = (handler, options) => {
    const dispatch = (request: IncomingMessage, response: ServerResponse) => {
      // Only while the app is open: a closing Fastify answers 503 with `connection: close` itself.
      const raw =
        routes.byKey.size === 0 || routes.closing
          ? undefined
          : routes.byKey.get(`${request.method} ${request.url}`);
      if (raw === undefined) handler(request, response);
      else raw(request, response, () => handler(request, response));
    };
    const server = https ? createHttpsServer(https, dispatch) : createHttpServer(dispatch);
    // What Fastify does to the HTTP/1 server it makes itself (fastify/lib/server.js), with the options
    // after its defaults were applied.
    const settings = options as ServerSettings;
    server.keepAliveTimeout = settings.keepAliveTimeout ?? 72_000;
    server.requestTimeout = settings.requestTimeout ?? 0;
    server.setTimeout(settings.connectionTimeout ?? 0);
    if (typeof settings.maxRequestsPerSocket === "number" && settings.maxRequestsPerSocket > 0) {
      server.maxRequestsPerSocket = settings.maxRequestsPerSocket;
    }
    return server;
  };
  return {
    serverFactory,
    attach(app: FastifyInstance) {
      registries.set(app, routes);
      app.addHook("preClose", (done) => {
        routes.closing = true;
        done();
      });
    },
  };
}

/**
 * Answers `method url` (the exact URL, no query string) with `route` before Fastify, on an app built with
 * `rawRoutesServerFactory`; a no-op on any other app (e.g. one only used through `inject`).
 */
export function addRawRoute(app: FastifyInstance, method: string, url: string, route: RawRoute): boolean {
  const routes = registries.get(app);
  if (routes === undefined) return false;
  routes.byKey.set(`${method} ${url}`, route);
  return true;
}
