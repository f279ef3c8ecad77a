import type { FastifyRouteSchemaDef } from "fastify/types/schema.js";
import { validatorCompiler } from "fastify-type-provider-zod";
import type { ZodType } from "zod";

/**
 * A route-level validator compiler for small, flat request bodies on hot routes. For the schema shapes it
 * understands — an optional/nullable strict object whose fields are all optional strings with length
 * bounds — a check compiled from the zod schema runs first, and a body it accepts is one zod would accept
 * unchanged, so it is used as is. Everything else (a body it does not accept, a schema it does not
 * understand) goes through zod, so every refusal and its messages are zod's own. zod's parse of a
 * one-field body (a context, an issues list, a fresh object per call) cost more than validating the
 * token in it.
 */
export function quickValidator<S>(route: FastifyRouteSchemaDef<S>) {
  const viaZod = validatorCompiler(route as FastifyRouteSchemaDef<ZodType>);
  const accepts = compileCheck(route.schema as ZodType);
  if (accepts === undefined) return viaZod;
  return (data: unknown) => (accepts(data) ? { value: data } : viaZod(data));
}

type Check = (value: unknown) => boolean;

/** The zod v4 definition fields this reads. */
type Def = {
  type: string;
  innerType?: ZodType;
  shape?: Record<string, ZodType>;
  catchall?: ZodType;
  checks?: Array<{ _zod: { def: { check: string; minimum?: number; maximum?: number } } }>;
  coerce?: boolean;
};

const defOf = (schema: ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** A check that accepts only what `schema` accepts unchanged, or undefined for shapes it does not know. */
export function compileCheck(schema: ZodType): Check | undefined {
  const def = defOf(schema);
  switch (def.type) {
    case "optional":
    case "nullable": {
      const inner = def.innerType === undefined ? undefined : compileCheck(def.innerType);
      if (inner === undefined) return undefined;
      return def.type === "optional"
        ? (value) => value === undefined || inner(value)
        : (value) => value === null || inner(value);
    }
    case "object":
      return compileStrictObject(def);
    default:
      return undefined;
  }
}

function compileStrictObject(def: Def): Check | undefined {
  // Only strict objects (unknown keys refused) whose fields are all optional.
  if (def.shape === undefined || def.catchall === undefined || defOf(def.catchall).type !== "never") {
    return undefined;
  }
  const fields = new Map<string, Check>();
  for (const [key, field] of Object.entries(def.shape)) {
    const fieldDef = defOf(field);
    if (fieldDef.type !== "optional" || fieldDef.innerType === undefined) return undefined;
    const check = compileString(defOf(fieldDef.innerType));
    if (check === undefined) return undefined;
    fields.set(key, check);
  }
  return (value) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
    for (const key in value) {
      const check = fields.get(key);
      if (check === undefined || !check((value as Record<string, unknown>)[key])) return false;
    }
    return true;
  };
}

function compileString(def: Def): Check | undefined {
  if (def.type !== "string" || def.coerce === true) return undefined;
  let min = 0;
  let max = Number.POSITIVE_INFINITY;
  for (const check of def.checks ?? []) {
    const { check: kind, minimum, maximum } = check._zod.def;
    if (kind === "min_length" && minimum !== undefined) min = Math.max(min, minimum);
    else if (kind === "max_length" && maximum !== undefined) max = Math.min(max, maximum);
    else return undefined;
  }
  return (value) => typeof value === "string" && value.length >= min && value.length <= max;
}
