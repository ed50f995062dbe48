// Mcp-Param-* headers (2026-07-28 Streamable HTTP, "Custom Headers from Tool Parameters"): a stdio server sees no
// headers, so berth checks them against the tool's x-mcp-header declarations before a 2026 client's tools/call
// reaches the server, directly or through bridge A — 400 -32020 for a missing, disagreeing or malformed header.
// And bridge A's multi round-trip: inputResponses without a requestState, or with keys berth never asked, get a
// fresh input_required (MRTR, Error Handling), not -32602.
// Build first: npx tsc -p tsconfig.json && node --import tsx --test test/param-headers.test.ts
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { runBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { call2026 } from './helpers/call-2026.ts';
import pino from 'pino';
import type { HttpError } from '../src/wire/http-error.ts';
import { ToolSchemaCache } from '../src/session/tool-schemas.ts';
import { decodeParamValue, encodeParamValue, scanParamHeaders, validateParamHeaders } from '../src/wire/param-headers.ts';

const MODERN = '2026-07-28';
const fixture = (era: '2025' | '2026') => [
  process.execPath,
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('./fixtures/param-header-server.ts', import.meta.url)),
  '--era',
  era,
];

/** The fixture's `route` schema, as its tools/list gives it. */
const ROUTE_SCHEMA = {
  type: 'object',
  properties: {
    region: { type: 'string', 'x-mcp-header': 'Region' },
    priority: { type: 'integer', 'x-mcp-header': 'Priority' },
    query: { type: 'string' },
  },
  required: ['region', 'query'],
};

/** What a header value may be on the wire (RFC 9110 field value, no whitespace at either end). */
const HEADER_SAFE = /^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$/;

describe('Mcp-Param-* value encoding and check (property)', () => {
  test('any string survives encode → decode, and its encoding is a valid header value', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.string()), (s) => {
        const wire = encodeParamValue(s);
        assert.match(wire, HEADER_SAFE);
        assert.deepEqual(decodeParamValue(wire), { value: s });
      }),
      { numRuns: 2000 },
    );
  });

  test('a header built from the arguments passes; one naming another value is refused -32020', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.maxSafeInteger(), fc.string(), (region, priority, other) => {
        const args = { region, priority, query: 'q' };
        const headers = { 'mcp-param-region': encodeParamValue(region), 'mcp-param-priority': String(priority) };
        assert.equal(validateParamHeaders(ROUTE_SCHEMA, headers, args, 1), undefined);
        fc.pre(other !== region);
        const refusal = validateParamHeaders(ROUTE_SCHEMA, { ...headers, 'mcp-param-region': encodeParamValue(other) }, args, 1);
        assert.equal(refusal?.status, 400);
        assert.equal(refusal?.code, -32020);
        assert.match(refusal!.message, /Mcp-Param-Region does not match arguments\.region/);
      }),
      { numRuns: 500 },
    );
  });

  test('what the spec encodes, and what a server must refuse', () => {
    assert.equal(encodeParamValue('us-west1'), 'us-west1');
    assert.equal(encodeParamValue('Hello, 世界'), '=?base64?SGVsbG8sIOS4lueVjA==?=');
    assert.equal(encodeParamValue(' padded '), '=?base64?IHBhZGRlZCA=?=');
    assert.equal(encodeParamValue('=?base64?literal?='), '=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=');
    assert.ok('error' in decodeParamValue('=?base64?SGVsbG8*?='), 'not base64');
    assert.ok('error' in decodeParamValue('=?base64?SGVsbG8?='), 'unpadded');
    assert.ok('error' in decodeParamValue('=?base64?/w==?='), 'not UTF-8');
    assert.deepEqual(decodeParamValue('=?BASE64?eA==?='), { value: '=?BASE64?eA==?=' }, 'the sentinel is case-sensitive');
    // Integers compare by value; a number-typed or a malformed declaration is handled as the spec and SDK do.
    assert.equal(
      validateParamHeaders(ROUTE_SCHEMA, { 'mcp-param-region': 'x', 'mcp-param-priority': '42.0' }, { region: 'x', priority: 42 }, 1),
      undefined,
    );
    assert.equal(scanParamHeaders({ type: 'object', properties: { a: { type: 'array', 'x-mcp-header': 'A' } } }).ok, false);
    assert.equal(scanParamHeaders({ type: 'object', anyOf: [{ properties: { a: { type: 'string', 'x-mcp-header': 'A' } } }] }).ok, false);
    assert.equal(
      scanParamHeaders({
        type: 'object',
        properties: { a: { type: 'string', 'x-mcp-header': 'X' }, b: { type: 'string', 'x-mcp-header': 'x' } },
      }).ok,
      false,
      'case-insensitively unique',
    );
    assert.deepEqual(
      scanParamHeaders({
        type: 'object',
        properties: { o: { type: 'object', properties: { r: { type: 'string', 'x-mcp-header': 'R' } } } },
      }),
      {
        ok: true,
        headers: [{ name: 'R', path: ['o', 'r'], type: 'string' }],
      },
    );
  });
});

describe('ToolSchemaCache', () => {
  const route = { name: 'route', inputSchema: ROUTE_SCHEMA };
  const request = (id: number, name: string, args: Record<string, unknown>) => ({
    jsonrpc: '2.0' as const,
    id,
    method: 'tools/call',
    params: { name, arguments: args },
  });

  test('concurrent calls share one tools/list; an unlisted tool asks again only after the refresh interval', async () => {
    let lists = 0;
    const cache = new ToolSchemaCache(async () => (lists++, [route]), pino({ level: 'silent' }), 2000);
    await Promise.all([1, 2, 3].map((id) => cache.check({ 'mcp-param-region': 'x' }, request(id, 'route', { region: 'x' }))));
    assert.equal(lists, 1, 'one tools/list for three concurrent first calls');
    await assert.rejects(cache.check({}, request(4, 'route', { region: 'x' })), (e: HttpError) => e.status === 400 && e.code === -32020);
    await cache.check({}, request(5, 'not_listed', { region: 'x' }));
    assert.equal(lists, 1, 'a miss within the refresh interval does not ask again (the server answers an unknown tool)');
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && lists === 1) {
      await new Promise((r) => setTimeout(r, 20));
      await cache.check({}, request(6, 'not_listed', {}));
    }
    assert.equal(lists, 2, 'a miss after the interval asks again');
  });

  test('a failed tools/list lets calls through unchecked, and is not retried before the refresh interval', async () => {
    let lists = 0;
    const cache = new ToolSchemaCache(() => (lists++, Promise.reject(new Error('no server'))), pino({ level: 'silent' }), 60_000);
    await cache.check({}, request(1, 'route', { region: 'x' }));
    await cache.check({}, request(2, 'route', { region: 'x' }));
    assert.equal(lists, 1);
  });
});

interface Reply {
  status: number;
  body: any;
}

/** One raw 2026-07-28 tools/call with the standard headers and `extra` ones. */
const call = (
  url: string,
  id: number,
  name: string,
  args: Record<string, unknown>,
  extra: Record<string, string> = {},
  params: Record<string, unknown> = {},
): Promise<Reply> => call2026(url, extra, id, name, args, params);

function refused(r: Reply, id: number, header: RegExp): void {
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.id, id);
  assert.equal(r.body.error?.code, -32020, JSON.stringify(r.body));
  assert.match(r.body.error.message, header);
}

function routed(r: Reply, id: number, args: Record<string, unknown>): void {
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.id, id);
  assert.deepEqual(JSON.parse(textOf(r.body.result)), { routed: args }, JSON.stringify(r.body));
}

for (const era of ['2026', '2025'] as const) {
  const through = era === '2026' ? 'a 2026-era stdio server' : 'a 2025-era stdio server (bridge A)';
  describe(`Mcp-Param-* headers checked by berth in front of ${through}`, { timeout: 90_000 }, () => {
    let berth: BerthProcess;
    before(async () => {
      berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], fixture(era));
    });
    after(() => berth?.stop());

    const args = { region: 'us-west1', query: 'SELECT 1' };

    test('a missing header → 400 -32020 naming it; the call never runs', async () => {
      refused(await call(berth.url, 1, 'route', args), 1, /Mcp-Param-Region is required/);
      refused(
        await call(berth.url, 2, 'route', { ...args, priority: 3 }, { 'mcp-param-region': 'us-west1' }),
        2,
        /Mcp-Param-Priority is required/,
      );
    });

    test('a header that disagrees with the body → 400 -32020', async () => {
      refused(
        await call(berth.url, 3, 'route', args, { 'mcp-param-region': 'eu-north1' }),
        3,
        /Mcp-Param-Region does not match arguments\.region/,
      );
      refused(
        await call(berth.url, 4, 'route', { ...args, priority: 3 }, { 'mcp-param-region': 'us-west1', 'mcp-param-priority': '4' }),
        4,
        /Mcp-Param-Priority does not match/,
      );
    });

    test('malformed base64 → 400 -32020', async () => {
      refused(
        await call(berth.url, 5, 'route', args, { 'mcp-param-region': '=?base64?dXMtd2VzdDE*?=' }),
        5,
        /Mcp-Param-Region is not valid base64/,
      );
    });

    test('a correct plain header and a correct base64 header → 200, the call runs', async () => {
      routed(await call(berth.url, 6, 'route', args, { 'Mcp-Param-Region': 'us-west1' }), 6, args);
      const zurich = { region: ' Zürich ', priority: 7, query: 'q' };
      routed(
        await call(berth.url, 7, 'route', zurich, { 'mcp-param-region': '=?base64?IFrDvHJpY2gg?=', 'mcp-param-priority': '7' }),
        7,
        zurich,
      );
    });

    test('inside a runtime session too: refused without the header, served with it', async () => {
      const session = { 'berth-runtime-session': randomBytes(16).toString('base64url') };
      refused(await call(berth.url, 8, 'route', args, session), 8, /Mcp-Param-Region is required/);
      routed(await call(berth.url, 9, 'route', args, { ...session, 'mcp-param-region': 'us-west1' }), 9, args);
    });

    test('the official SDK v2 client, which mirrors the headers itself, gets through', async () => {
      const client = new Client({ name: 'param-headers-test', version: '1' }, { versionNegotiation: { mode: { pin: MODERN } } });
      await client.connect(new StreamableHTTPClientTransport(new URL(berth.url)));
      try {
        await client.listTools();
        const a = { region: 'Hello, 世界', priority: -7, query: 'q' };
        assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'route', arguments: a }))), { routed: a });
      } finally {
        await client.close();
      }
    });
  });
}

describe('bridge A: inputResponses berth did not ask for start a fresh round, not an error', { timeout: 90_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    berth = await runBerth(['--isolation', 'process', '--warm-pool', '1'], fixture('2025'));
  });
  after(() => berth?.stop());

  const question = { question: 'colour?' };
  /** An input_required whose one request is the server's elicitation, freshly asked. */
  function asksAgain(r: Reply, id: number): { key: string; requestState: string } {
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.id, id);
    assert.equal(r.body.error, undefined, `not an error: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.result?.resultType, 'input_required', JSON.stringify(r.body));
    const keys = Object.keys(r.body.result.inputRequests);
    assert.equal(keys.length, 1);
    assert.equal(r.body.result.inputRequests[keys[0]!].method, 'elicitation/create');
    assert.equal(r.body.result.inputRequests[keys[0]!].params.message, 'colour?');
    return { key: keys[0]!, requestState: r.body.result.requestState };
  }
  const answer = (key: string) => ({ [key]: { action: 'accept', content: { answer: 'teal' } } });

  test('inputResponses without requestState → a new input_required (and the call completes from there)', async () => {
    const fresh = asksAgain(await call(berth.url, 11, 'ask', question, {}, { inputResponses: answer('r1') }), 11);
    const done = await call(berth.url, 12, 'ask', question, {}, { inputResponses: answer(fresh.key), requestState: fresh.requestState });
    assert.deepEqual(JSON.parse(textOf(done.body.result)), { action: 'accept', content: { answer: 'teal' } });
  });

  test('inputResponses with keys berth never asked, and no requestState → a new input_required', async () => {
    const fresh = asksAgain(
      await call(berth.url, 13, 'ask', question, {}, { inputResponses: { nobody_asked: { action: 'decline' } } }),
      13,
    );
    await call(berth.url, 14, 'ask', question, {}, { inputResponses: answer(fresh.key), requestState: fresh.requestState });
  });

  test('a true retry whose inputResponses hold only keys berth never asked → asked again, then completes', async () => {
    const first = asksAgain(await call(berth.url, 15, 'ask', question), 15);
    const again = asksAgain(
      await call(
        berth.url,
        16,
        'ask',
        question,
        {},
        { inputResponses: { nobody_asked: { action: 'decline' } }, requestState: first.requestState },
      ),
      16,
    );
    assert.notEqual(again.requestState, first.requestState);
    const done = await call(
      berth.url,
      17,
      'ask',
      question,
      {},
      {
        inputResponses: { ...answer(again.key), extra: { action: 'decline' } },
        requestState: again.requestState,
      },
    );
    assert.deepEqual(JSON.parse(textOf(done.body.result)), { action: 'accept', content: { answer: 'teal' } });
  });
});
