// Small pieces with properties worth checking over many inputs (fast-check).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { eachLine } from '../src/util/lines.ts';
import { parseDuration, parseSize } from '../src/util/units.ts';
import { invalidMessageReason } from '../src/wire/jsonrpc.ts';

async function linesOf(chunks: string[], max: number): Promise<string[]> {
  const s = new PassThrough();
  const out: string[] = [];
  eachLine(s, max, (l) => out.push(l));
  for (const c of chunks) s.write(c);
  s.end();
  await new Promise((r) => setImmediate(r));
  return out;
}

test('eachLine: any chunking gives the same lines; long lines are cut at the bound and marked', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.stringMatching(/^[a-z]{0,40}$/), { maxLength: 8 }), fc.integer({ min: 1, max: 7 }), async (lines, cut) => {
      const text = lines.map((l) => `${l}\n`).join('');
      const chunks: string[] = [];
      for (let i = 0; i < text.length; i += cut) chunks.push(text.slice(i, i + cut));
      const got = await linesOf(chunks, 16);
      assert.deepEqual(
        got,
        lines.map((l) => (l.length > 16 ? `${l.slice(0, 16)} [truncated]` : l)),
      );
    }),
  );
});

test('durations and sizes: units round-trip, garbage is refused with a reason', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10_000 }),
      fc.constantFrom(['ms', 1], ['s', 1000], ['m', 60_000], ['h', 3_600_000]),
      (n, [u, f]) => {
        assert.equal(parseDuration(`${n}${u}`), n * (f as number));
      },
    ),
  );
  assert.equal(parseSize('4MiB'), 4 * 1024 * 1024);
  assert.equal(parseSize('256m'), 256 * 1024 * 1024);
  assert.throws(() => parseDuration('5 minutes'), /invalid duration/);
  assert.throws(() => parseSize('lots'), /invalid size/);
});

test('invalidMessageReason never throws and accepts exactly the JSON-RPC 2.0 shapes', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const why = invalidMessageReason(v);
      assert.ok(why === undefined || typeof why === 'string');
      if (why === undefined) assert.equal((v as { jsonrpc: string }).jsonrpc, '2.0');
    }),
  );
  assert.equal(invalidMessageReason({ jsonrpc: '2.0', id: 1, method: 'ping' }), undefined);
  assert.equal(invalidMessageReason({ jsonrpc: '2.0', id: 1, result: {} }), undefined);
  assert.match(invalidMessageReason({ jsonrpc: '2.0', id: 1, result: {}, error: { code: 1, message: 'x' } })!, /exactly one/);
});

test('logId: 8 characters of a plain id; node and random part of a cluster id, so sessions stay apart in logs', async () => {
  const { logId } = await import('../src/session/launch.ts');
  assert.equal(logId('abcdefghijklmnopqrstuvwx'), 'abcdefgh');
  assert.equal(logId('c1.berth-1.Q2x9AAAAAAA.kP0rrrrrrrrrrrrrrrrrrrrr.Zt3mmmmmmmmmmmmm'), 'berth-1:kP0rrrrr');
  assert.notEqual(logId('c1.n.i.aaaaaaaaX.m'), logId('c1.n.i.bbbbbbbbX.m'));
});
