// What berth reads whole from a server that serves HTTP itself (its own requests: the era probe's server/discover, a
// stateless pool's initialize; a rewritten server/discover answer) stops at limits.maxMessageSize. A hostile server
// answering with an endless body used to be buffered until berth ran out of memory, taking every session with it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { parseConfig } from '../src/config/load.ts';
import { HttpUpstream } from '../src/relay/http-upstream.ts';
import { relayOptions } from '../src/session/connector.ts';

const LIMIT = 1024 * 1024;
/** How much the flooding server would send at most (bounded, as every test loop is): 64 times the limit. */
const FLOOD = 64 * LIMIT;

let server: Server;
let port: number;

before(async () => {
  // Every POST is answered with JSON that never ends within the limit: 64 KiB chunks, as fast as berth reads them.
  server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let bytes = 0;
    const more = () => {
      while (bytes < FLOOD) {
        bytes += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.end();
    };
    res.once('close', () => server.emit('answered', bytes));
    more();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

function upstream(): HttpUpstream {
  const config = parseConfig({ runtimes: { default: { command: ['true'], upstream: 'http' } } }).runtimes.default!;
  return new HttpUpstream(port, relayOptions(config), [], LIMIT);
}

test("berth's own server/discover to a server that floods is refused at maxMessageSize, and berth stops reading", async () => {
  const u = upstream();
  const answered = once(server, 'answered');
  try {
    await assert.rejects(
      u.call2026('server/discover', {}, '2026-07-28'),
      /answer is larger than maxMessageSize \(1048576 bytes\); berth read no further/,
    );
  } finally {
    await u.close();
  }
  const [bytes] = (await answered) as [number];
  assert.ok(bytes < FLOOD, `the server sent all ${bytes} bytes: berth kept reading`);
});

test("a stateless pool's handshake (initialize) with a server that floods is refused the same way", async () => {
  const u = upstream();
  try {
    await assert.rejects(
      u.initializeAsClient({ protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }),
      /larger than maxMessageSize/,
    );
  } finally {
    await u.close();
  }
});
