// Large messages pass through berth as the bytes they came as. berth must parse every server line to route it, but
// writing it on took JSON.stringify, a byte count, a UTF-8 encode and a copy of the same text again: passes over a
// 30 MiB result, each one stalling every other session for as long as it takes. A message parsed from a line of at
// least RAW_MIN bytes keeps those bytes (the chunks they were read in, uncopied); a response whose id berth changes
// keeps them with the new id spliced in, where the id can be found for certain (withId); anything else, and any
// message built or changed in berth, is serialised as before. Messages are never changed in place in berth (a change
// makes a new object), which is what makes kept bytes safe: a changed message is another object, with none kept.
import type { Writable } from 'node:stream';
import type { JsonRpcId, JsonRpcResponse } from './jsonrpc.js';

/** Below this a line's bytes are not kept: stringifying is cheap, and a short line may be a view of a larger chunk. */
export const RAW_MIN = 64 * 1024;

/** JSON text as a string, or as bytes in pieces (written one after another, never joined). */
export type Json = string | readonly Buffer[];

interface Kept {
  parts: readonly Buffer[];
  bytes: number;
  /** Where the id's digits are in the bytes, to be replaced by `id`'s JSON. */
  idAt?: readonly [start: number, end: number];
  id?: JsonRpcId;
}

const kept = new WeakMap<object, Kept>();

/**
 * `value` was parsed from `text`, read as `parts` (one line, valid JSON): later writes may reuse them. Kept only
 * when the bytes can be an SSE data line as they are (no CR; a line has no LF) and were valid UTF-8 (the decode
 * replaced what was not with U+FFFD, and the client must get what berth parsed; a real U+FFFD just goes the slow way).
 */
export function keepBytes(value: object, parts: readonly Buffer[], text: string): void {
  let bytes = 0;
  for (const p of parts) bytes += p.length;
  if (bytes < RAW_MIN) return;
  // indexOf, not a regular expression: a character class scans a 30 MiB text many times slower.
  if (text.includes('\r') || text.includes('\uFFFD')) return;
  // A piece that is a small view of a larger buffer (a line's first or last, or a read shared with other lines)
  // would hold all of that buffer for as long as the message is kept, where retainBytes, retainBudget and maxBuffer
  // count only the view: a review kept 90-byte messages each holding a 64 KiB read, 54 MiB per session counted as
  // 110 KB. Copied, what is held is at most twice what is counted.
  kept.set(value, { parts: parts.map((p) => (p.length < p.buffer.byteLength / 2 ? Buffer.from(p) : p)), bytes });
}

/** The JSON text of a message: the bytes it came as, when berth kept them; else JSON.stringify. */
export function jsonOf(value: unknown): Json {
  const k = typeof value === 'object' && value !== null ? kept.get(value) : undefined;
  if (!k) return JSON.stringify(value);
  if (!k.idAt) return k.parts;
  const [start, end] = k.idAt;
  return [...slice(k.parts, 0, start), Buffer.from(JSON.stringify(k.id)), ...slice(k.parts, end, k.bytes)];
}

/** The length in bytes of JSON text. */
export function jsonBytes(json: Json): number {
  if (typeof json === 'string') return Buffer.byteLength(json);
  let n = 0;
  for (const p of json) n += p.length;
  return n;
}

/** Writes JSON text (or an event holding it) to a response: pieces under one cork, so they go out in one writev. */
export function writeJson(out: Writable, json: Json, end = false): void {
  if (typeof json === 'string') {
    if (end) out.end(json);
    else out.write(json);
    return;
  }
  out.cork();
  for (const p of json) out.write(p);
  if (end) out.end();
  out.uncork();
}

/**
 * The response `m` with id `id` (berth's own number for a call, going back to the client's id). Its kept bytes carry
 * over when the numeric id stands where only the top-level id can: as the last member before the closing `}` (as
 * the TypeScript SDK writes), or right after the opening `{` (or after a leading `"jsonrpc":"2.0",`, as the Python
 * SDK writes). Both are tokens of the top-level object: the first `{` and the last `}` of a line that parsed as one
 * object are its own, and a `"` right after `{` or `,` opens a key; it never sits inside a string.
 */
export function withId<T extends JsonRpcResponse>(m: T, id: JsonRpcId): T {
  const moved = { ...m, id };
  const k = kept.get(m);
  if (!k) return moved;
  if (k.idAt) {
    // Spliced already (berth's id gave way to the client's; a bridge may name it again): the same place, this id.
    kept.set(moved, { ...k, id });
    return moved;
  }
  if (typeof m.id !== 'number') return moved;
  const digits = String(m.id);
  // The last member first: of a key given twice JSON.parse keeps the last. (A hostile server that repeats the id
  // further in, after a leading one, gets its own client an answer with berth's id: the same as answering wrongly.)
  const tail = `,"id":${digits}}`;
  if (edge(k, tail.length, 'end') === tail) {
    kept.set(moved, { ...k, idAt: [k.bytes - 1 - digits.length, k.bytes - 1], id });
    return moved;
  }
  const start = edge(k, HEAD_MAX + digits.length + 1, 'start');
  for (const head of HEADS) {
    const end = head.length + digits.length;
    if (start.startsWith(head) && start.slice(head.length, end) === digits && (start[end] === ',' || start[end] === '}')) {
      kept.set(moved, { ...k, idAt: [head.length, end], id });
      return moved;
    }
  }
  return moved;
}

const HEADS = ['{"id":', '{"jsonrpc":"2.0","id":'];
const HEAD_MAX = Math.max(...HEADS.map((h) => h.length));

/** The first or last `n` bytes of kept bytes, as latin1 text (for comparing with ASCII). */
function edge(k: Kept, n: number, side: 'start' | 'end'): string {
  const from = side === 'start' ? 0 : Math.max(0, k.bytes - n);
  return Buffer.concat(slice(k.parts, from, Math.min(k.bytes, from + n))).toString('latin1');
}

/** Views of bytes [from, to) of the pieces, uncopied. */
function slice(parts: readonly Buffer[], from: number, to: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const p of parts) {
    const s = Math.max(from, at);
    const e = Math.min(to, at + p.length);
    if (s < e) out.push(p.subarray(s - at, e - at));
    at += p.length;
    if (at >= to) break;
  }
  return out;
}
