import fastJsonStringify from "fast-json-stringify";
import type { FastifyRouteSchemaDef } from "fastify/types/schema.js";
import { serializerCompiler as zodSerializerCompiler } from "fastify-type-provider-zod";
import { type ZodType, z } from "zod";

/**
 * A route-level serializer compiler for the hot routes (create, validate, get, delete): the route's zod response
 * schema, converted once to JSON Schema, compiled with fast-json-stringify (what Fastify itself uses for
 * JSON Schema responses). The app-wide compiler of fastify-type-provider-zod parses every response with
 * zod and then runs JSON.stringify, about three times the cost; the compiled one writes the declared
 * properties straight out. The contract is the same: only the schema's properties are written, and a
 * response missing a required one fails (a 500 problem) instead of being sent. The OpenAPI document is
 * unaffected: it is generated from the zod schemas, not from the serializer.
 *
 * A schema JSON Schema cannot express (a transform, a custom type) keeps the zod serializer.
 */
export function compiledSerializer<S>(route: FastifyRouteSchemaDef<S>): (data: unknown) => string {
  return compileResponseSerializer(route.schema as ZodType, route);
}

/** The same, for a response schema outside a route (the fast validation path's answers). */
export function compileResponseSerializer(
  schema: ZodType,
  route: FastifyRouteSchemaDef<unknown> = { schema, method: "POST", url: "/" },
): (data: unknown) => string {
  let jsonSchema: Record<string, unknown>;
  try {
    jsonSchema = z.toJSONSchema(schema, {
      target: "draft-7",
      io: "output",
      unrepresentable: "throw",
    }) as Record<string, unknown>;
  } catch {
    return zodSerializerCompiler(route as FastifyRouteSchemaDef<ZodType>);
  }
  return fastJsonStringify(jsonSchema);
}
