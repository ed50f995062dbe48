// Large server messages pass through berth as the bytes they came as (src/wire/raw-json.ts), split into lines as
// their chunks arrive (src/relay/json-lines.ts). What a client reads must be exactly what JSON.stringify of the
// parsed message, with berth's changes, would have said: property-based (fast-check) over random messages, key
// orders, id forms and chunkings, against the slow path as the oracle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { JsonLines, type Line } from '../src/relay/json-lines.ts';
import { jsonBytes, jsonOf, keepBytes, RAW_MIN, withId, type Json } from '../src/wire/raw-json.ts';
import type { JsonRpcResponse } from '../src/wire/jsonrpc.ts';

const text = (j: Json) => (typeof j === 'string' ? j : Buffer.concat(j).toString('utf8'));

/** Splits bytes at the given cut points (fractions of the length), as a pipe might deliver them. */
function chunked(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...at, bytes.length]) {
    if (c > from) out.push(bytes.subarray(from, c));
    from = Math.max(from, c);
  }
  return out;
}

function linesOf(chunks: Buffer[]): Line[] {
  const got: Line[] = [];
  const reader = new JsonLines((l) => got.push(l));
  for (const c of chunks) reader.push(c);
  return got;
}

/** A line as berth's stdio channel reads it, parsed and kept. */
function read(line: string, cuts: number[] = []): { value: JsonRpcResponse; line: Line } {
  const [l] = linesOf(chunked(Buffer.from(`${line}\n`), cuts));
  assert.ok(l?.text !== undefined);
  const value = JSON.parse(l.text) as JsonRpcResponse;
  keepBytes(value, l.parts, l.text);
  return { value, line: l };
}

const pad = (n: number) => 'é'.repeat(n / 2); // two bytes each: chunk cuts fall inside characters

test('lines: any chunking gives the same lines, characters split across chunks decode whole, blank lines are skipped', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.json(),
          fc.string({ unit: 'grapheme' }).map((s) => s.replace(/\n/g, ' ')),
        ),
        { maxLength: 8 },
      ),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
      (items, cuts) => {
        const input = Buffer.from(items.map((i) => `${i}\n`).join(''));
        const got = linesOf(chunked(input, cuts));
        const want = items.map((i) => i.replace(/^[ \t\r]+/, '')).filter((i) => i !== '');
        assert.deepEqual(
          got.map((l) => (l.text === undefined ? l.head : l.text)),
          want.map((w) => (/^[{[]/.test(w) ? w : Buffer.from(w).subarray(0, 256).toString('utf8'))),
        );
      },
    ),
    { numRuns: 300 },
  );
});

test('lines: a line that cannot be JSON is counted, never kept or decoded past its first 256 bytes', () => {
  const long = Buffer.from(`${'x'.repeat(5_000_000)}\n`);
  const [l] = linesOf(chunked(long, [0.1, 0.3, 0.5, 0.7, 0.9]));
  assert.equal(l!.text, undefined);
  assert.equal(l!.bytes, 5_000_000);
  assert.equal(l!.head, 'x'.repeat(256));
  assert.ok(l!.parts.reduce((n, p) => n + p.length, 0) <= 256);
});

test('a large notification passes as its own bytes, unjoined; a small one is stringified', () => {
  const note = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"${pad(200_000)}"}}`;
  const { value } = read(note, [0.2, 0.21, 0.6]);
  const j = jsonOf(value);
  assert.ok(Array.isArray(j), 'kept as pieces');
  assert.equal((j as Buffer[]).length, 4, 'the chunks as read, not joined');
  assert.equal(text(j), note);
  assert.equal(jsonBytes(j), Buffer.byteLength(note));
  assert.equal(typeof jsonOf(read('{"jsonrpc":"2.0","method":"x"}').value), 'string');
});

test('a new id is spliced in where only the top-level id can be; else the answer is stringified', () => {
  const result = { content: [{ type: 'text', text: pad(150_000) }], id: 7, note: '"id":7}' };
  // The forms the SDKs write (TypeScript: result, jsonrpc, id; Python: jsonrpc, id, result) and others.
  const forms: [string, boolean][] = [
    [JSON.stringify({ result, jsonrpc: '2.0', id: 7 }), true],
    [JSON.stringify({ jsonrpc: '2.0', id: 7, result }), true],
    [JSON.stringify({ id: 7, jsonrpc: '2.0', result }), true],
    [JSON.stringify({ jsonrpc: '2.0', result, id: 7 }).replace('"id":7}', '"id":7.0}'), false],
    [JSON.stringify({ result, jsonrpc: '2.0', id: 7 }).replace('"id":7}', '"id" : 7}'), false],
    [JSON.stringify({ jsonrpc: '2.0', result, id: 7 }).replace('"id":7}', '"\\u0069d":7}'), false],
  ];
  for (const [line, spliced] of forms) {
    const { value } = read(line, [0.5]);
    assert.equal(value.id, 7);
    for (const id of ['client-1', 42, 'with "quotes" and \u2028']) {
      const out = jsonOf(withId(value, id));
      assert.equal(Array.isArray(out), spliced, line.slice(0, 40) + '…' + line.slice(-30));
      assert.deepEqual(JSON.parse(text(out)), { ...value, id });
    }
  }
});

test('bytes that are not what the client must see are not kept: a CR, or what decoded to U+FFFD', () => {
  const body = pad(100_000);
  for (const line of [
    `{"jsonrpc":"2.0","method":"m","params":{"a":"${body}"}}\r`,
    `{"jsonrpc":"2.0",\r"method":"m","params":{"a":"${body}"}}`,
  ]) {
    const { value } = read(line);
    assert.equal(typeof jsonOf(value), 'string');
  }
  const invalid = Buffer.concat([
    Buffer.from(`{"jsonrpc":"2.0","method":"m","params":{"a":"${body}`),
    Buffer.from([0xff, 0xfe]),
    Buffer.from('"}}\n'),
  ]);
  const [l] = linesOf([invalid]);
  const value = JSON.parse(l!.text!) as object;
  keepBytes(value, l!.parts, l!.text!);
  const j = jsonOf(value);
  assert.equal(typeof j, 'string');
  assert.ok((j as string).includes('\uFFFD'), 'the client gets what berth parsed');
});

test('property: for any large answer, id and chunking, what is written parses to the message with the new id', () => {
  fc.assert(
    fc.property(
      fc.record({ a: fc.jsonValue(), b: fc.string() }),
      fc.nat({ max: 2 ** 31 }),
      fc.oneof(fc.string(), fc.integer()),
      fc.constantFrom<'ts' | 'py' | 'other'>('ts', 'py', 'other'),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
      (extra, internal, client, order, cuts) => {
        const result = { ...extra, big: 'z'.repeat(RAW_MIN) };
        const message =
          order === 'ts'
            ? { result, jsonrpc: '2.0', id: internal }
            : order === 'py'
              ? { jsonrpc: '2.0', id: internal, result }
              : { jsonrpc: '2.0', result, id: internal, x: 1 };
        const { value } = read(JSON.stringify(message), cuts);
        assert.deepEqual(JSON.parse(text(jsonOf(withId(value, client)))), { ...message, id: client });
      },
    ),
    { numRuns: 200 },
  );
});

test('an id changed twice (berth → client, then renamed by a bridge) is spliced at the same place', () => {
  const message = { result: { big: 'q'.repeat(RAW_MIN) }, jsonrpc: '2.0', id: 3 };
  const { value } = read(JSON.stringify(message), [0.3]);
  const twice = withId(withId(value, 'first'), 'second');
  const out = jsonOf(twice);
  assert.ok(Array.isArray(out));
  assert.deepEqual(JSON.parse(text(out)), { ...message, id: 'second' });
});

test('what is kept holds no more memory than it counts: leading blanks do not count, small views of large reads are copied', () => {
  // 64 KiB of blanks before a tiny message: kept it would be a 90-byte view holding a 64 KiB read (a review's 54 MiB
  // per session, counted as 110 KB).
  const padded = Buffer.from(`${' '.repeat(RAW_MIN)}{"jsonrpc":"2.0","method":"notifications/x","params":{}}\n`);
  const [l] = linesOf([padded.subarray(0, RAW_MIN + 10), padded.subarray(RAW_MIN + 10)]);
  const value = JSON.parse(l!.text!) as object;
  keepBytes(value, l!.parts, l!.text!);
  assert.equal(typeof jsonOf(value), 'string', 'not kept: its own bytes are under RAW_MIN');

  // A large message whose first and last pieces are small views of 1 MiB reads: those two are copied.
  const body = `{"jsonrpc":"2.0","method":"m","params":{"a":"${'x'.repeat(2 * RAW_MIN)}"}}`;
  const read1 = Buffer.alloc(1 << 20, 0x20);
  const read2 = Buffer.alloc(1 << 20, 0x20);
  const split = 2 * RAW_MIN;
  Buffer.from(body.slice(0, 100)).copy(read1, read1.length - 100);
  const middle = Buffer.from(body.slice(100, split));
  Buffer.from(body.slice(split)).copy(read2, 0);
  const parts = [read1.subarray(read1.length - 100), middle, read2.subarray(0, body.length - split)];
  const message = JSON.parse(body) as object;
  keepBytes(message, parts, body);
  const j = jsonOf(message) as Buffer[];
  assert.equal(text(j), body);
  for (const p of j)
    assert.ok(p.buffer.byteLength <= 2 * p.length || p.buffer.byteLength <= 8192, `a ${p.length}-byte piece holds ${p.buffer.byteLength}`);
});
