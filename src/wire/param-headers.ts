// The Mcp-Param-{Name} headers of 2026-07-28 (Streamable HTTP, "Custom Headers from Tool Parameters"): a tool's
// input schema may mark a property `x-mcp-header: Name`, and a client then mirrors that argument into the header so
// that intermediaries can route on it. Whoever processes the body must check that the two agree (400, -32020): a
// stdio server sees no headers, so berth does it for the servers it hosts. Pure: schema + headers + arguments in,
// a refusal (or none) out.
import type { IncomingHttpHeaders } from 'node:http';
import { PARAM_HEADER_PREFIX } from './headers.js';
import { HttpError } from './http-error.js';
import type { JsonRpcId } from './jsonrpc.js';
import { ErrorCode2026 } from './streamable-http-2026.js';

/** One `x-mcp-header` declaration: the argument at `path` travels as `Mcp-Param-{name}`. */
export interface ParamHeader {
  /** The name as declared (the header is `Mcp-Param-` + this, compared case-insensitively). */
  name: string;
  /** The chain of `properties` keys from the schema root to the annotated property. */
  path: string[];
  /** Its JSON Schema type: integers (and, tolerated, numbers) are compared numerically. */
  type: 'string' | 'integer' | 'boolean' | 'number';
}

const X_MCP_HEADER = 'x-mcp-header';
/** RFC 9110 §5.1 token (1*tchar). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TYPES = new Set(['string', 'integer', 'boolean', 'number']);
/** Keywords whose subschemas are not statically reachable: an annotation under one makes the tool invalid. */
const UNREACHABLE = [
  'items',
  'prefixItems',
  'contains',
  'additionalProperties',
  'unevaluatedProperties',
  'unevaluatedItems',
  'propertyNames',
  'patternProperties',
  'dependentSchemas',
  'oneOf',
  'anyOf',
  'allOf',
  'not',
  'if',
  'then',
  'else',
  '$defs',
  'definitions',
];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Whether a subtree carries an annotation anywhere (under a keyword where none may be). */
function annotatedAnywhere(node: unknown, depth = 0): boolean {
  if (depth > 64 || typeof node !== 'object' || node === null) return false;
  if (!Array.isArray(node) && X_MCP_HEADER in node) return true;
  return Object.values(node).some((v) => annotatedAnywhere(v, depth + 1));
}

/**
 * The declarations of a tool's input schema, or the reason the definition is invalid (a conforming client then
 * leaves the tool out of its list and sends no headers for it, so berth checks none). `number` is not allowed by
 * the spec, but a server that declares it still gets its header checked, numerically.
 */
export function scanParamHeaders(inputSchema: unknown): { ok: true; headers: ParamHeader[] } | { ok: false; reason: string } {
  const headers: ParamHeader[] = [];
  const seen = new Map<string, string>();
  const visit = (node: unknown, path: string[]): string | undefined => {
    if (!isObject(node)) return undefined;
    const where = path.length ? path.join('.') : '<root>';
    if (X_MCP_HEADER in node) {
      const name = node[X_MCP_HEADER];
      if (path.length === 0) return `${where}: x-mcp-header on the schema root`;
      if (typeof name !== 'string' || !TOKEN.test(name)) return `${where}: x-mcp-header ${JSON.stringify(name)} is not an RFC 9110 token`;
      const type = node.type;
      if (typeof type !== 'string' || !TYPES.has(type)) return `${where}: x-mcp-header on a property of type ${JSON.stringify(type)}`;
      const prior = seen.get(name.toLowerCase());
      if (prior !== undefined) return `x-mcp-header ${JSON.stringify(name)} is declared twice (also as ${JSON.stringify(prior)})`;
      seen.set(name.toLowerCase(), name);
      headers.push({ name, path, type: type as ParamHeader['type'] });
    }
    for (const k of UNREACHABLE)
      if (k in node && annotatedAnywhere(node[k])) return `${where}: x-mcp-header under ${k} is not statically reachable`;
    if (isObject(node.properties))
      for (const [key, child] of Object.entries(node.properties)) {
        const fault = visit(child, [...path, key]);
        if (fault) return fault;
      }
    return undefined;
  };
  const fault = propertiesDepth(inputSchema) > 32 ? 'the schema nests properties deeper than 32 levels' : visit(inputSchema, []);
  return fault ? { ok: false, reason: fault } : { ok: true, headers };
}

/** How deep `properties` chains go (a bound on the walk). */
function propertiesDepth(node: unknown, depth = 0): number {
  if (!isObject(node) || !isObject(node.properties) || depth > 32) return depth;
  return Math.max(depth, ...Object.values(node.properties).map((c) => propertiesDepth(c, depth + 1)));
}

const SENTINEL = /^=\?base64\?(.*)\?=$/s;
/** Canonical base64 (RFC 4648 §4, padded): what a client produces, and nothing else. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** A header value that needs no encoding: visible ASCII, inner spaces and tabs, no whitespace at either end. */
const PLAIN = /^(?:[\x21-\x7e](?:[\x20\x21-\x7e\t]*[\x21-\x7e])?)?$/;

/** An argument as the spec writes it into a header; undefined for a value no header carries (objects, NaN, …). */
export function paramString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number' && Number.isFinite(value) && (!Number.isInteger(value) || Number.isSafeInteger(value)))
    return String(value);
  return undefined;
}

/** The header value for a string: as it is when it is a safe plain value, else `=?base64?{UTF-8 in base64}?=`. */
export function encodeParamValue(value: string): string {
  return PLAIN.test(value) && !SENTINEL.test(value) ? value : `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** What a header value says: the decoded text, or why it is malformed (a bad sentinel, a byte no plain value has). */
export function decodeParamValue(raw: string): { value: string } | { error: string } {
  const m = SENTINEL.exec(raw);
  if (!m) {
    // Node hands bytes beyond ASCII through as latin1; a plain value is visible ASCII, spaces and tabs only.
    return /^[\x20-\x7e\t]*$/.test(raw) ? { value: raw } : { error: 'has characters outside visible ASCII (send them as =?base64?…?=)' };
  }
  if (!BASE64.test(m[1]!)) return { error: 'is not valid base64 between =?base64? and ?=' };
  try {
    return { value: new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(m[1]!, 'base64')) };
  } catch {
    return { error: 'decodes from base64 to bytes that are not UTF-8' };
  }
}

function valueAt(args: unknown, path: string[]): unknown {
  let node = args;
  for (const key of path) node = isObject(node) ? node[key] : undefined;
  return node;
}

function headerOf(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[`${PARAM_HEADER_PREFIX}${name.toLowerCase()}`];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Integers (and numbers) compare by value, so `42.0` matches 42; everything else as decoded text. */
function agrees(decl: ParamHeader, decoded: string, body: unknown, bodyText: string): boolean {
  if ((decl.type === 'integer' || decl.type === 'number') && typeof body === 'number' && /^-?\d+(\.\d+)?$/.test(decoded))
    return Number(decoded) === body;
  return decoded === bodyText;
}

/**
 * Checks a `tools/call`'s Mcp-Param-* headers against its arguments: a value in the body needs its header,
 * and the header (decoded) must equal it; a null or absent value expects no header (one sent anyway is ignored).
 * Returns the refusal (400, -32020 HeaderMismatch, naming the header and what is wrong), or undefined.
 */
export function checkParamHeaders(
  declared: readonly ParamHeader[],
  headers: IncomingHttpHeaders,
  args: unknown,
  id: JsonRpcId | null,
): HttpError | undefined {
  for (const decl of declared) {
    const header = `Mcp-Param-${decl.name}`;
    const body = valueAt(args, decl.path);
    if (body === undefined || body === null) continue;
    const bodyText = paramString(body);
    if (bodyText === undefined) continue; // not a primitive: the server's own argument validation refuses it
    const where = `arguments.${decl.path.join('.')}`;
    const raw = headerOf(headers, decl.name);
    const refuse = (what: string, extra: Record<string, unknown> = {}) =>
      new HttpError(400, ErrorCode2026.HeaderMismatch, `Bad Request: ${header} ${what}`, { id, data: { mismatch: { header, ...extra } } });
    if (raw === undefined) return refuse(`is required: the tool declares it for ${where}, which the body sets`, { expected: bodyText });
    const decoded = decodeParamValue(raw);
    if ('error' in decoded) return refuse(decoded.error);
    if (!agrees(decl, decoded.value, body, bodyText))
      return refuse(`does not match ${where}: the header says ${JSON.stringify(decoded.value)}, the body ${JSON.stringify(body)}`, {
        expected: bodyText,
        received: decoded.value,
      });
  }
  return undefined;
}

/** The whole check from a tool's input schema (an invalid definition checks nothing: see scanParamHeaders). */
export function validateParamHeaders(
  inputSchema: unknown,
  headers: IncomingHttpHeaders,
  args: unknown,
  id: JsonRpcId | null,
): HttpError | undefined {
  const scan = scanParamHeaders(inputSchema);
  return scan.ok ? checkParamHeaders(scan.headers, headers, args, id) : undefined;
}
