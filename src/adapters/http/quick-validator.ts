import type { FastifyRouteSchemaDef } from "fastify/types/schema.js";
import { validatorCompiler } from "fastify-type-provider-zod";
import type { ZodType } from "zod";

/**
 * A route-level validator compiler for small request bodies on hot routes. For the schema shapes it
 * understands — an optional/nullable strict object whose fields are all optional, each a string with
 * length bounds, a safe integer with bounds, an enum, an array of such strings, or a record of bounded
 * string keys to unknown values with boolean refinements — a check compiled from the zod schema runs first,
 * and a body it accepts is one zod would accept unchanged (zod would return an equal copy), so it is used
 * as is. Everything else (a body it does not accept, a schema it does not understand) goes through zod, so
 * every refusal and its messages are zod's own. zod's parse of a small body (a context, an issues list, a
 * fresh object per level) cost more than validating the token in it, and a few µs per create.
 */
export function quickValidator<S>(route: FastifyRouteSchemaDef<S>) {
  const viaZod = validatorCompiler(route as FastifyRouteSchemaDef<ZodType>);
  const accepts = compileCheck(route.schema as ZodType);
  if (accepts === undefined) return viaZod;
  return (data: unknown) => (accepts(data) ? { value: data } : viaZod(data));
}

type Check = (value: unknown) => boolean;

type CheckDef = {
  check: string;
  minimum?: number;
  maximum?: number;
  value?: unknown;
  inclusive?: boolean;
  format?: string;
  fn?: (value: unknown) => unknown;
};

/** The zod v4 definition fields this reads. */
type Def = {
  type: string;
  innerType?: ZodType;
  shape?: Record<string, ZodType>;
  catchall?: ZodType;
  element?: ZodType;
  keyType?: ZodType;
  valueType?: ZodType;
  entries?: Record<string, unknown>;
  checks?: Array<{ _zod: { def: CheckDef } }>;
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
    const check = compileField(defOf(fieldDef.innerType));
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

function compileField(def: Def): Check | undefined {
  switch (def.type) {
    case "string":
      return compileString(def);
    case "number":
      return compileInteger(def);
    case "enum":
      return compileEnum(def);
    case "array":
      return compileStringArray(def);
    case "record":
      return compileRecord(def);
    default:
      return undefined;
  }
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

/** `z.number().int()` with inclusive bounds: a finite safe integer in range (what zod accepts). */
function compileInteger(def: Def): Check | undefined {
  if (def.coerce === true) return undefined;
  let safeInteger = false;
  let min = Number.NEGATIVE_INFINITY;
  let max = Number.POSITIVE_INFINITY;
  for (const check of def.checks ?? []) {
    const { check: kind, value, inclusive, format } = check._zod.def;
    if (kind === "number_format" && format === "safeint") safeInteger = true;
    else if (kind === "greater_than" && inclusive === true && typeof value === "number")
      min = Math.max(min, value);
    else if (kind === "less_than" && inclusive === true && typeof value === "number")
      max = Math.min(max, value);
    else return undefined;
  }
  // Without .int() zod's number rules (finite, NaN) would need their own care here; no hot route has one.
  if (!safeInteger) return undefined;
  return (value) => typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max;
}

function compileEnum(def: Def): Check | undefined {
  if (def.entries === undefined || (def.checks?.length ?? 0) > 0) return undefined;
  const values = Object.values(def.entries);
  if (!values.every((value) => typeof value === "string")) return undefined;
  const allowed = new Set<unknown>(values);
  return (value) => typeof value === "string" && allowed.has(value);
}

function compileStringArray(def: Def): Check | undefined {
  if (def.element === undefined) return undefined;
  const element = compileString(defOf(def.element));
  if (element === undefined) return undefined;
  let max = Number.POSITIVE_INFINITY;
  for (const check of def.checks ?? []) {
    const { check: kind, maximum } = check._zod.def;
    if (kind === "max_length" && maximum !== undefined) max = Math.min(max, maximum);
    else return undefined;
  }
  return (value) => {
    if (!Array.isArray(value) || value.length > max) return false;
    for (let i = 0; i < value.length; i++) if (!element(value[i])) return false;
    return true;
  };
}

/**
 * `z.record(<bounded string>, z.unknown())` on a plain object, with refinements that answer a boolean.
 * A refinement that throws or answers anything but true (a promise, a truthy value) leaves it to zod.
 */
function compileRecord(def: Def): Check | undefined {
  if (def.keyType === undefined || def.valueType === undefined) return undefined;
  if (defOf(def.valueType).type !== "unknown") return undefined;
  const key = compileString(defOf(def.keyType));
  if (key === undefined) return undefined;
  const refinements: Array<(value: unknown) => unknown> = [];
  for (const check of def.checks ?? []) {
    const { check: kind, fn } = check._zod.def;
    if (kind !== "custom" || fn === undefined) return undefined;
    refinements.push(fn);
  }
  return (value) => {
    if (typeof value !== "object" || value === null) return false;
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null) return false;
    // zod copies a record key by key, and an own "__proto__" would not copy as a key: leave it to zod.
    for (const name of Reflect.ownKeys(value)) if (name === "__proto__" || !key(name)) return false;
    for (const refine of refinements) {
      try {
        if (refine(value) !== true) return false;
      } catch {
        return false;
      }
    }
    return true;
  };
}
