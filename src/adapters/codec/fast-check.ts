import { type $ZodType, util } from "zod/v4/core";

/**
 * A predicate compiled from a zod schema that answers one question fast: would `schema.parse(value)`
 * succeed AND return a value equal to `value` itself (nothing stripped, defaulted or transformed)? When it
 * says yes the codec can use the value as it is; when it says no the codec asks zod, which stays the
 * authority (its issues, its stripping). So the predicate may be stricter than zod, never looser: it
 * refuses unknown object keys, objects that are not plain, and any schema feature it does not know (then
 * there is no predicate at all and every value goes through zod).
 *
 * Why: zod allocates a result per field and copies every object. On the event paths (every append, every
 * event a follower or rebuild reads) that was the largest cost of the codec.
 */

export type FastCheck = (value: unknown) => boolean;

// zod defs as far as this compiler reads them.
type Def = {
  type: string;
  checks?: Array<{ _zod: { def: CheckDef } }>;
  coerce?: boolean;
  format?: string;
  check?: string;
  pattern?: RegExp;
  values?: unknown[];
  element?: Schema;
  shape?: Record<string, Schema>;
  catchall?: Schema;
  innerType?: Schema;
  keyType?: Schema;
  valueType?: Schema;
  mode?: string;
};
type CheckDef = {
  check: string;
  fn?: (value: unknown) => unknown;
  when?: unknown;
  format?: string;
  minimum?: number;
  maximum?: number;
  value?: number;
  inclusive?: boolean;
};
type Schema = { _zod: { def: Def; values?: Set<unknown>; optin?: string } };

// String formats whose whole zod check is `pattern.test(value)`. Others (url, ipv6, jwt…) do more.
const PATTERN_ONLY_FORMATS = new Set(["datetime", "date", "time", "uuid", "guid"]);

/** The predicate for `schema`, or undefined if the schema uses something this compiler does not know. */
export function compileFastCheck(schema: $ZodType): FastCheck | undefined {
  const context: unknown[] = [];
  const body = emit(schema as unknown as Schema, "value", context, { next: 0 });
  if (body === undefined) return undefined;
  // One straight-line function per schema (as zod's own JIT does): no per-field closure calls.
  const factory = new Function(
    "context",
    "isPlainObject",
    "refines",
    `return function fastCheck(value) {\n${body}\nreturn true;\n};`,
  );
  return factory(context, util.isPlainObject, refines) as FastCheck;
}

type Names = { next: number };

/**
 * A refinement (`.refine(fn)`) as the predicate runs it: passed only when it answers exactly true. zod
 * also passes other truthy answers and reports a throw or a promise its own way; those go to zod.
 */
function refines(refinement: (value: unknown) => unknown, value: unknown): boolean {
  try {
    return refinement(value) === true;
  } catch {
    return false;
  }
}

/**
 * Statements that `return false` unless the value held in the variable `v` passes; undefined if the
 * schema uses something unknown. Regexes and sets go into `context` and are referenced by index.
 */
function emit(schema: Schema, v: string, context: unknown[], names: Names): string | undefined {
  const def = schema._zod.def;
  if (def.coerce) return undefined;
  const ref = (item: unknown) => `context[${context.push(item) - 1}]`;
  const own = ownChecks(def, v, ref);
  if (own === undefined) return undefined;
  let base: string | undefined;
  switch (def.type) {
    case "string":
      base = emitString(def, v, ref);
      break;
    case "number":
      base = `if (typeof ${v} !== "number" || !Number.isFinite(${v})) return false;`;
      break;
    case "literal":
    case "enum": {
      const values = schema._zod.values;
      if (values === undefined) return undefined;
      const [only] = values;
      base =
        values.size === 1 && (typeof only === "string" || typeof only === "number")
          ? `if (${v} !== ${JSON.stringify(only)}) return false;`
          : `if (!${ref(values)}.has(${v})) return false;`;
      break;
    }
    case "unknown":
      base = "";
      break;
    case "optional": {
      // A defaulted inner schema would substitute a value for undefined: not "returned as is".
      if (def.innerType === undefined || def.innerType._zod.optin === "defaulted") return undefined;
      const inner = emit(def.innerType, v, context, names);
      if (inner === undefined) return undefined;
      base = `if (${v} !== undefined) {\n${inner}\n}`;
      break;
    }
    case "nullable": {
      if (def.innerType === undefined) return undefined;
      const inner = emit(def.innerType, v, context, names);
      if (inner === undefined) return undefined;
      base = `if (${v} !== null) {\n${inner}\n}`;
      break;
    }
    case "array": {
      if (def.element === undefined) return undefined;
      const i = `i${names.next++}`;
      const item = `e${names.next++}`;
      const element = emit(def.element, item, context, names);
      if (element === undefined) return undefined;
      base = `if (!Array.isArray(${v})) return false;
for (let ${i} = 0; ${i} < ${v}.length; ${i}++) {
const ${item} = ${v}[${i}];
${element}
}`;
      break;
    }
    case "object":
      base = emitObject(def, v, context, names);
      break;
    case "record":
      base = emitRecord(def, v, context, names);
      break;
    default:
      return undefined;
  }
  if (base === undefined) return undefined;
  return own.length === 0 ? base : `${base}\n${own.join("\n")}`;
}

function emitString(def: Def, v: string, ref: (item: unknown) => string): string | undefined {
  const isString = `if (typeof ${v} !== "string") return false;`;
  if (def.format === undefined) return isString;
  const pattern = def.pattern;
  if (
    def.check !== "string_format" ||
    !PATTERN_ONLY_FORMATS.has(def.format) ||
    !(pattern instanceof RegExp)
  ) {
    return undefined;
  }
  // zod resets lastIndex before each test; a pattern without /g or /y has no state to reset.
  if (pattern.global || pattern.sticky) return undefined;
  return `${isString}\nif (!${ref(pattern)}.test(${v})) return false;`;
}

function emitObject(def: Def, v: string, context: unknown[], names: Names): string | undefined {
  // A strict object's catchall is `never`: an unknown key fails in zod, and fails here (below) too.
  const strict = def.catchall !== undefined && def.catchall._zod.def.type === "never";
  if ((def.catchall !== undefined && !strict) || def.shape === undefined) return undefined;
  const keys = Object.keys(def.shape);
  const lines = [
    // Ordinary objects only: zod reads inherited properties into its output (JSON.stringify would not),
    // and its output always has Object.prototype and no symbol keys (for…in below does not see them).
    `if (typeof ${v} !== "object" || ${v} === null || Object.getPrototypeOf(${v}) !== Object.prototype) return false;`,
    `if (Object.getOwnPropertySymbols(${v}).length > 0) return false;`,
  ];
  for (const key of keys) {
    const field = `f${names.next++}`;
    const check = emit(def.shape[key] as Schema, field, context, names);
    if (check === undefined) return undefined;
    lines.push(`{\nconst ${field} = ${v}[${JSON.stringify(key)}];\n${check}\n}`);
  }
  // A key zod would strip means its output differs from the input: let zod produce it.
  const k = `k${names.next++}`;
  const cases = keys.map((key) => `case ${JSON.stringify(key)}:`).join(" ");
  lines.push(`for (const ${k} in ${v}) { switch (${k}) { ${cases} break; default: return false; } }`);
  return lines.join("\n");
}

function emitRecord(def: Def, v: string, context: unknown[], names: Names): string | undefined {
  if (def.mode !== undefined && def.mode !== "strict") return undefined;
  const keyDef = def.keyType?._zod.def;
  // Plain string keys (length checks allowed); symbol keys fail in zod.
  if (keyDef === undefined || keyDef.type !== "string" || keyDef.format !== undefined) return undefined;
  if (keyDef.coerce || def.valueType === undefined) return undefined;
  const k = `k${names.next++}`;
  const keyChecks = ownChecks(keyDef, k, () => {
    throw new Error("unreachable: length checks reference nothing");
  });
  if (keyChecks === undefined || keyChecks.some((line) => line.includes("context["))) return undefined;
  const item = `r${names.next++}`;
  const valueCheck = emit(def.valueType, item, context, names);
  if (valueCheck === undefined) return undefined;
  // zod's output leaves out a "__proto__" key and fails on symbol keys.
  return `if (!isPlainObject(${v}) || Object.getPrototypeOf(${v}) !== Object.prototype) return false;
if (Object.getOwnPropertySymbols(${v}).length > 0) return false;
for (const ${k} in ${v}) {
if (${k} === "__proto__" || !Object.hasOwn(${v}, ${k})) return false;
${keyChecks.join("\n")}
const ${item} = ${v}[${k}];
${valueCheck}
}`;
}

/** The schema's own checks (min length, int, ≥ 0…) as statements; undefined if one is unknown. */
function ownChecks(def: Def, v: string, ref: (item: unknown) => string): string[] | undefined {
  const checks: string[] = [];
  for (const check of def.checks ?? []) {
    const condition = checkCondition(check._zod.def, v, ref);
    if (condition === undefined) return undefined;
    checks.push(`if (!(${condition})) return false;`);
  }
  return checks;
}

function checkCondition(check: CheckDef, v: string, ref: (item: unknown) => string): string | undefined {
  const number = (n: unknown) => (typeof n === "number" && Number.isFinite(n) ? String(n) : undefined);
  switch (check.check) {
    case "custom":
      // A plain `.refine(fn)`; a conditional one (`when`) or anything else stays with zod.
      return typeof check.fn === "function" && check.when === undefined
        ? `refines(${ref(check.fn)}, ${v})`
        : undefined;
    case "min_length": {
      const minimum = number(check.minimum);
      return minimum === undefined ? undefined : `${v}.length >= ${minimum}`;
    }
    case "max_length": {
      const maximum = number(check.maximum);
      return maximum === undefined ? undefined : `${v}.length <= ${maximum}`;
    }
    case "number_format":
      return check.format === "safeint" ? `Number.isSafeInteger(${v})` : undefined;
    case "greater_than": {
      const limit = number(check.value);
      if (limit === undefined) return undefined;
      return check.inclusive ? `${v} >= ${limit}` : `${v} > ${limit}`;
    }
    case "less_than": {
      const limit = number(check.value);
      if (limit === undefined) return undefined;
      return check.inclusive ? `${v} <= ${limit}` : `${v} < ${limit}`;
    }
    default:
      return undefined;
  }
}
