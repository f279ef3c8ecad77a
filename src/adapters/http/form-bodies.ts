import formbody from "@fastify/formbody";
import type { FastifyInstance } from "fastify";

const FORM = "application/x-www-form-urlencoded";

/**
 * `application/x-www-form-urlencoded` bodies, for the routes of one encapsulated scope: the ones whose
 * protocol sends forms (the OAuth token endpoint, OIDC back-channel logout). Everywhere else a form is
 * a 415 like any other body that is not JSON. A host that already parses forms keeps its parser.
 */
export async function acceptFormBodies(scope: FastifyInstance) {
  if (scope.hasContentTypeParser(FORM)) return;
  await scope.register(formbody, { bodyLimit: scope.initialConfig.bodyLimit });
}
