import type { FastifyRouteSchemaDef } from "fastify/types/schema.js";
import { validatorCompiler } from "fastify-type-provider-zod";
import type { ZodType } from "zod";
import { compileFastCheck } from "../codec/fast-check.ts";

/**
 * A route-level validator compiler for small request bodies on hot routes (validate, create). The route's
 * zod schema is compiled into a predicate (the event codec's `compileFastCheck`) that accepts only a body
 * zod would accept unchanged, so a body it accepts is used as is. Everything else (a body it does not
 * accept, a schema it does not understand) goes through zod, so every refusal and its messages are zod's
 * own. zod's parse of a small body (a context, an issues list, a fresh object per level) cost more than
 * validating the token in it, and a few µs per create.
 */
export function quickValidator<S>(route: FastifyRouteSchemaDef<S>) {
  const viaZod = validatorCompiler(route as FastifyRouteSchemaDef<ZodType>);
  const accepts = compileFastCheck(route.schema as ZodType);
  if (accepts === undefined) return viaZod;
  return (data: unknown) => (accepts(data) ? { value: data } : viaZod(data));
}
