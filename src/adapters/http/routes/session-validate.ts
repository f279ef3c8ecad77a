import type { FastifyInstance, FastifyReply } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { SessionService } from "../../../app/session-service.ts";
import type { RequestFacts, Validator } from "../../../app/validator.ts";
import type { Clock } from "../../../domain/ports.ts";
import type { ExistingSession } from "../../../domain/session-state.ts";
import type { ValidationEntry } from "../../../projections/validation-entry.ts";
import { compileFastCheck } from "../../codec/fast-check.ts";
import { bearerToken } from "../../session-ops/bearer-token.ts";
import { answerForValid, type CheckJwtClaims, userOf } from "../../session-ops/valid-answer.ts";
import { requestFacts } from "../authenticate.ts";
import { compiledSerializer, compileResponseSerializer } from "../compiled-serializer.ts";
import {
  createFastValidate,
  type FastValidateCounts,
  handedOver,
  replayHandedOverBody,
} from "../fast-validate.ts";
import { BEARER_CHALLENGE, INVALID_TOKEN_CHALLENGE } from "../problem.ts";
import { quickValidator } from "../quick-validator.ts";
import { validationRateLimitOf } from "../rate-limit.ts";
import { addRawRoute } from "../raw-routes.ts";
import { lifecycleParts } from "../request-lifecycle.ts";
import { validateAnswer, validateBody, viewFromState } from "../schemas.ts";

// A gateway's `jwt` next to the token: does the caller's IdP token still agree with the session (same
// subject, same roles and groups)? A difference records the change and recycles (see idp-sessions.ts).
export type { CheckJwtClaims } from "../../session-ops/valid-answer.ts";

export type ValidateRouteDeps = {
  service: SessionService;
  validator: Validator;
  clock: Clock;
  checkJwtClaims?: CheckJwtClaims | undefined;
  fastPath?: boolean | undefined;
};

/**
 * POST /v1/sessions/validate, the most benchmarked route (docs/performance.md "validate-http"): memory
 * answers synchronously, everything else continues asynchronously. Its own file so that nothing else's
 * changes pass through it.
 */
export function registerValidateRoute(fastify: FastifyInstance, deps: ValidateRouteDeps) {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  const { service, clock } = deps;
  const view = (session: ExistingSession) => viewFromState(session, clock.now());

  app.post(
    "/v1/sessions/validate",
    {
      serializerCompiler: compiledSerializer,
      validatorCompiler: quickValidator,
      schema: {
        summary: "Is this session token valid now?",
        body: validateBody,
        response: { 200: validateAnswer, 401: refusalSchema },
      },
      // A request the fast path read and handed over: its body is parsed again from what was read.
      preParsing: replayHandedOverBody,
    },
    (request, reply) => {
      const body = request.body ?? {};
      const token = body.token ?? bearerToken(request.headers.authorization);
      const facts = {
        ip: body.client_ip ?? request.ip,
        userAgent: body.user_agent ?? requestFacts(request).userAgent,
      };
      // Memory answers almost every validation, and then this whole request runs synchronously (no
      // promise per step); anything that needs I/O continues asynchronously. The fast path may have
      // judged the token already (and counted it, so it is not judged again).
      const outcome =
        handedOver(request.raw)?.outcome ??
        (token === undefined ? MALFORMED : deps.validator.validateCached(token, facts));
      if (outcome === undefined) return validateSlowly(token as string, facts, body.jwt, reply);
      if (!outcome.valid) {
        refuse(reply, outcome.reason, token !== undefined);
        return;
      }
      if (body.jwt !== undefined) return answerValid(outcome.entry, facts, body.jwt, reply);
      const session = service.cachedAtLeast(outcome.entry.sessionId, outcome.entry.position);
      if (session === undefined) return answerValid(outcome.entry, facts, undefined, reply);
      reply.send(validAnswer(outcome.entry, session));
    },
  );

  async function validateSlowly(
    token: string,
    facts: RequestFacts,
    jwt: string | undefined,
    reply: FastifyReply,
  ): Promise<void> {
    const outcome = await deps.validator.validate(token, facts);
    if (!outcome.valid) {
      refuse(reply, outcome.reason);
      return;
    }
    await answerValid(outcome.entry, facts, jwt, reply);
  }

  /** A valid token's answer once the IdP token (if any) agrees and the session's view is at hand. */
  async function answerValid(
    entry: ValidationEntry,
    facts: RequestFacts,
    jwt: string | undefined,
    reply: FastifyReply,
  ): Promise<void> {
    const answer = await answerForValid(deps, entry, jwt, facts);
    if (!answer.valid) refuse(reply, answer.reason);
    else {
      // A view from the validation entry (NATS away): it lacks the create's client, address, user agent and
      // metadata, and says so.
      if (answer.partial) reply.header("tessera-session-view", "partial");
      reply.send({ valid: true as const, session: answer.session, user: answer.user });
    }
  }

  const validAnswer = (e: ValidationEntry, session: ExistingSession) => ({
    valid: true as const,
    session: view(session),
    user: userOf(e),
  });

  // At debug and trace Fastify logs every request (app.ts): those validations keep their access logs.
  if (deps.fastPath !== false && !logsEveryRequest(fastify.log.level)) {
    const fast = createFastValidate({
      validator: deps.validator,
      service,
      view,
      bodyLimit: fastify.initialConfig.bodyLimit ?? 1_048_576,
      acceptsBody: compileFastCheck(validateBody) ?? (() => false),
      serializeValid: compileResponseSerializer(validateAnswer),
      serializeRefusal: compileResponseSerializer(refusalSchema),
      rateLimit: validationRateLimitOf(fastify),
      lifecycle: () => lifecycleParts(fastify),
      log: fastify.log,
    });
    if (addRawRoute(fastify, "POST", "/v1/sessions/validate", fast.route))
      fastPaths.set(fastify, fast.counts);
  }
}

const logsEveryRequest = (level: string) => level === "debug" || level === "trace";

const fastPaths = new WeakMap<FastifyInstance, FastValidateCounts>();

/** The fast validation path's counts on this app (undefined: the path is off). */
export function fastValidateCounts(app: FastifyInstance): Readonly<FastValidateCounts> | undefined {
  return fastPaths.get(app);
}

const refusalSchema = z.object({ valid: z.literal(false), reason: z.string() });

const refusal = (reason: string) => ({ valid: false as const, reason });

/** Every 401 names its challenge (RFC 9110 §11.6.1); RFC 6750's error only when a token was presented. */
function refuse(reply: FastifyReply, reason: string, presented = true) {
  reply
    .code(401)
    .header("www-authenticate", presented ? INVALID_TOKEN_CHALLENGE : BEARER_CHALLENGE)
    .send(refusal(reason));
}
const MALFORMED = { valid: false as const, reason: "malformed" };
