// --upstream http: how an answer reaches the client. A quick SSE answer arrives in one piece (headers, event and
// the end of the chunked body together: one read and one wake-up for the client, not three); a slow one still gets
// its headers once the JSON window has passed, before its result.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as connectTcp } from 'node:net';
import { connect, PROBE, runBerth, type BerthProcess } from './helpers/berth.ts';

interface Piece {
  at: number;
  text: string;
}

/** POSTs one tools/call on a raw connection and returns the response as the reads that carried it. */
function rawCall(url: string, sessionId: string, version: string, tool: string, args: Record<string, unknown>): Promise<Piece[]> {
  const u = new URL(url);
  const body = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: tool, arguments: args } });
  const head = [
    `POST ${u.pathname} HTTP/1.1`,
    `host: ${u.host}`,
    'content-type: application/json',
    'accept: application/json, text/event-stream',
    `mcp-session-id: ${sessionId}`,
    `mcp-protocol-version: ${version}`,
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ].join('\r\n');
  return new Promise((resolve, reject) => {
    const pieces: Piece[] = [];
    const t0 = performance.now();
    const socket = connectTcp(Number(u.port), u.hostname, () => socket.write(`${head}\r\n\r\n${body}`));
    socket.on('data', (d: Buffer) => {
      pieces.push({ at: performance.now() - t0, text: d.toString() });
      if (
        pieces
          .map((p) => p.text)
          .join('')
          .endsWith('0\r\n\r\n')
      )
        socket.end();
    });
    socket.on('close', () => resolve(pieces));
    socket.on('error', reject);
    socket.setTimeout(30_000, () => socket.destroy(new Error('no complete answer within 30 s')));
  });
}

describe('http upstream: writes to the client', () => {
  let berth: BerthProcess;
  let sessionId: string;
  let version: string;
  before(async () => {
    berth = await runBerth(
      ['--upstream', 'http', '--isolation', 'process', '--warm-pool', '1', '--json-window', '500ms'],
      [...PROBE, '--http'],
    );
    const { transport } = await connect(berth.url);
    sessionId = transport.sessionId!;
    version = transport.protocolVersion!;
  });
  after(() => berth.stop());

  test('a quick SSE answer comes in one piece: headers, its event and the end of the body together', async () => {
    // The first answer of a fresh server runs cold code: the comparison is on the ones after it.
    await rawCall(berth.url, sessionId, version, 'echo', { text: 'warm' });
    for (let i = 0; i < 3; i++) {
      const pieces = await rawCall(berth.url, sessionId, version, 'echo', { text: `one piece ${i}` });
      const first = pieces[0]!.text;
      assert.match(first, /^HTTP\/1\.1 200/);
      assert.match(first, /content-type: text\/event-stream/);
      assert.ok(first.includes(`one piece ${i}`), `the event came with the headers: ${JSON.stringify(pieces.map((p) => p.text))}`);
      assert.ok(first.endsWith('0\r\n\r\n'), 'and the end of the chunked body');
    }
  });

  test('a slow answer gets its headers after the JSON window, before its result', async () => {
    const pieces = await rawCall(berth.url, sessionId, version, 'sleep', { ms: 3000 });
    const first = pieces[0]!;
    assert.match(first.text, /^HTTP\/1\.1 200/);
    assert.ok(!first.text.includes('"result"'), `headers alone first: ${JSON.stringify(first.text)}`);
    const result = pieces.find((p) => p.text.includes('"result"'));
    assert.ok(result, 'the result came');
    assert.ok(first.at >= 400, `headers held for the JSON window (500 ms): at ${Math.round(first.at)} ms`);
    assert.ok(result.at - first.at >= 1000, `headers ${Math.round(first.at)} ms, result ${Math.round(result.at)} ms`);
  });
});
