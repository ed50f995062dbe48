// Forms from JSON Schema, as pure functions: schema -> fields, typed text -> value, content -> validated content.
// Used for elicitation (MCP's restricted schema) and for asking a tool's arguments field by field.

export interface Choice {
  value: string;
  title: string;
}

interface Base {
  name: string;
  /** The schema's title, else the property name. */
  label: string;
  description?: string;
  required: boolean;
}

export type Field =
  | (Base & { kind: 'string'; default?: string; minLength?: number; maxLength?: number; format?: string })
  | (Base & { kind: 'number'; integer: boolean; default?: number; minimum?: number; maximum?: number })
  | (Base & { kind: 'boolean'; default?: boolean })
  | (Base & { kind: 'choice'; choices: Choice[]; default?: string })
  | (Base & { kind: 'multi'; choices: Choice[]; default?: string[]; minItems?: number; maxItems?: number })
  /** Anything else a tool may take (objects, arrays, unions): typed as JSON. */
  | (Base & { kind: 'json'; default?: unknown });

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

type Json = Record<string, unknown>;
const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

function choicesOf(s: Json): Choice[] | undefined {
  if (Array.isArray(s.oneOf) || Array.isArray(s.anyOf)) {
    const opts = (s.oneOf ?? s.anyOf) as Json[];
    if (opts.every((o) => typeof o?.const === 'string'))
      return opts.map((o) => ({ value: o.const as string, title: str(o.title) ?? (o.const as string) }));
  }
  if (Array.isArray(s.enum) && s.enum.every((v) => typeof v === 'string')) {
    const names = Array.isArray(s.enumNames) ? (s.enumNames as unknown[]) : [];
    return (s.enum as string[]).map((v, i) => ({ value: v, title: str(names[i]) ?? v }));
  }
  return undefined;
}

/** The fields of an object schema, in property order. */
export function fieldsOf(schema: unknown): Field[] {
  const s = (schema ?? {}) as Json;
  const props = (s.properties ?? {}) as Record<string, Json>;
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  return Object.entries(props).map(([name, p]) => {
    const base: Base = { name, label: str(p.title) ?? name, description: str(p.description), required: required.has(name) };
    const choices = choicesOf(p);
    if (choices && (p.type === 'string' || p.type === undefined)) return { ...base, kind: 'choice', choices, default: str(p.default) };
    if (p.type === 'array' && p.items && typeof p.items === 'object') {
      const itemChoices = choicesOf(p.items as Json);
      if (itemChoices) {
        const def = Array.isArray(p.default) ? (p.default as string[]) : undefined;
        return { ...base, kind: 'multi', choices: itemChoices, default: def, minItems: num(p.minItems), maxItems: num(p.maxItems) };
      }
    }
    if (p.type === 'string')
      return {
        ...base,
        kind: 'string',
        default: str(p.default),
        minLength: num(p.minLength),
        maxLength: num(p.maxLength),
        format: str(p.format),
      };
    if (p.type === 'number' || p.type === 'integer')
      return {
        ...base,
        kind: 'number',
        integer: p.type === 'integer',
        default: num(p.default),
        minimum: num(p.minimum),
        maximum: num(p.maximum),
      };
    if (p.type === 'boolean') return { ...base, kind: 'boolean', default: typeof p.default === 'boolean' ? p.default : undefined };
    return { ...base, kind: 'json', default: p.default };
  });
}

const FORMATS: Record<string, (s: string) => boolean> = {
  email: (s) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(s),
  uri: (s) => /^[a-z][a-z0-9+.-]*:/i.test(s) && URL.canParse(s),
  // Date rolls 1815-02-30 over to March, so the round trip must give back the same day.
  date: (s) => {
    const d = new Date(`${s}T00:00:00Z`);
    return /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(d.getTime()) && d.toISOString().startsWith(s);
  },
  'date-time': (s) => /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s)),
};

/** Why a present value does not fit its field, or undefined when it does. */
export function checkValue(f: Field, v: unknown): string | undefined {
  switch (f.kind) {
    case 'string': {
      if (typeof v !== 'string') return `${f.label}: expected text`;
      const len = [...v].length; // JSON Schema counts characters, not UTF-16 units
      if (f.minLength !== undefined && len < f.minLength) return `${f.label}: at least ${f.minLength} characters`;
      if (f.maxLength !== undefined && len > f.maxLength) return `${f.label}: at most ${f.maxLength} characters`;
      if (f.format && FORMATS[f.format] && !FORMATS[f.format]!(v)) return `${f.label}: not a valid ${f.format}`;
      return undefined;
    }
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v)) return `${f.label}: expected a number`;
      if (f.integer && !Number.isInteger(v)) return `${f.label}: expected a whole number`;
      if (f.minimum !== undefined && v < f.minimum) return `${f.label}: at least ${f.minimum}`;
      if (f.maximum !== undefined && v > f.maximum) return `${f.label}: at most ${f.maximum}`;
      return undefined;
    case 'boolean':
      return typeof v === 'boolean' ? undefined : `${f.label}: expected true or false`;
    case 'choice':
      return typeof v === 'string' && f.choices.some((c) => c.value === v)
        ? undefined
        : `${f.label}: one of ${f.choices.map((c) => c.value).join(', ')}`;
    case 'multi': {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && f.choices.some((c) => c.value === x)))
        return `${f.label}: a list from ${f.choices.map((c) => c.value).join(', ')}`;
      if (new Set(v).size !== v.length) return `${f.label}: each choice at most once`;
      if (f.minItems !== undefined && v.length < f.minItems) return `${f.label}: choose at least ${f.minItems}`;
      if (f.maxItems !== undefined && v.length > f.maxItems) return `${f.label}: choose at most ${f.maxItems}`;
      return undefined;
    }
    case 'json':
      return undefined;
  }
}

/** Finds a choice by value, title (any case) or 1-based number. */
function pick(choices: Choice[], t: string): string | undefined {
  const lower = t.toLowerCase();
  const byText =
    choices.find((c) => c.value === t) ?? choices.find((c) => c.title.toLowerCase() === lower || c.value.toLowerCase() === lower);
  if (byText) return byText.value;
  const i = /^\d+$/.test(t) ? Number(t) : NaN;
  return choices[i - 1]?.value;
}

/**
 * Text typed at a prompt -> the field's value. Empty text means "not given" (value undefined), which only a required
 * field refuses: a default is what the prompt starts with (pre-filled, so it can be cleared), never put back here.
 */
export function parseField(f: Field, raw: string): Parsed {
  const t = f.kind === 'string' ? raw : raw.trim();
  if (t === '') return f.required ? { ok: false, error: `${f.label} is required` } : { ok: true, value: undefined };
  let v: unknown;
  switch (f.kind) {
    case 'string':
      v = t;
      break;
    case 'number':
      v = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t) ? Number(t) : NaN;
      break;
    case 'boolean':
      v = /^(y|yes|true|1)$/i.test(t) ? true : /^(n|no|false|0)$/i.test(t) ? false : undefined;
      if (v === undefined) return { ok: false, error: `${f.label}: answer yes or no` };
      break;
    case 'choice':
      v = pick(f.choices, t) ?? t;
      break;
    case 'multi':
      v = t
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean)
        .map((x) => pick(f.choices, x) ?? x);
      break;
    case 'json':
      try {
        v = JSON.parse(t);
      } catch {
        v = t; // plain text for a field that takes anything
      }
      break;
  }
  const error = checkValue(f, v);
  return error ? { ok: false, error } : { ok: true, value: v };
}

export type Validated = { ok: true; content: Record<string, unknown> } | { ok: false; errors: string[] };

/**
 * Checks content before it is sent: required present, every value in bounds, nothing the schema did not ask for.
 * Only what the user gave is sent: a default the user did not give (or cleared) is not added, since the server
 * applies its own defaults to what is left out.
 */
export function validateContent(fields: Field[], content: Record<string, unknown>): Validated {
  const errors: string[] = [];
  const out: Record<string, unknown> = {};
  const known = new Set(fields.map((f) => f.name));
  for (const k of Object.keys(content)) if (!known.has(k)) errors.push(`${k}: not asked for`);
  for (const f of fields) {
    const v = content[f.name];
    if (v === undefined) {
      if (f.required) errors.push(`${f.label} is required`);
      continue;
    }
    const e = checkValue(f, v);
    if (e) errors.push(e);
    else out[f.name] = v;
  }
  return errors.length ? { ok: false, errors } : { ok: true, content: out };
}

/** A one-line hint of what a field takes, shown beside its prompt. */
export function hint(f: Field): string {
  const parts: string[] = [];
  if (f.kind === 'string') {
    if (f.format) parts.push(f.format);
    if (f.minLength !== undefined || f.maxLength !== undefined) parts.push(`${f.minLength ?? 0}..${f.maxLength ?? '∞'} chars`);
  } else if (f.kind === 'number') {
    parts.push(f.integer ? 'integer' : 'number');
    // zod's int() says ±MAX_SAFE_INTEGER: no bound a person needs to read
    const min = f.minimum !== undefined && f.minimum > Number.MIN_SAFE_INTEGER ? f.minimum : undefined;
    const max = f.maximum !== undefined && f.maximum < Number.MAX_SAFE_INTEGER ? f.maximum : undefined;
    if (min !== undefined || max !== undefined) parts.push(`${min ?? '-∞'}..${max ?? '∞'}`);
  } else if (f.kind === 'json') parts.push('JSON');
  else if (f.kind === 'multi') parts.push('comma-separated');
  if (!f.required) parts.push('optional');
  return parts.join(', ');
}
