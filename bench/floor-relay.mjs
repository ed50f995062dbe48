// The floor under berth's per-call cost: the least a Node.js process can do to relay a Streamable HTTP call to a
// stdio server — node:http, one child per session, the POST body's bytes written to the child's stdin as they
// came, the child's next stdout line written back as the JSON answer. No validation, no id rewriting, no
// logging, no metrics, no timeouts, no SSE: not a gateway anyone should run, a yardstick for bench/where.ts --floor.
// With --no-child it answers initialize and tools/call itself (canned JSON): the floor of node:http alone.
//
//   node bench/floor-relay.mjs [--no-child] -- COMMAND ARGS...   (prints its URL on stdout)
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

const argv = process.argv.slice(2);
const noChild = argv.includes('--no-child');
const command = argv.slice(argv.indexOf('--') + 1);

/** A session's child and the answers it owes, first asked first answered (the client waits for each answer). */
function child() {
  const proc = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'ignore'] });
  const waiting = [];
  let rest = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (text) => {
    const lines = (rest + text).split('\n');
    rest = lines.pop();
    for (const line of lines) if (line) waiting.shift()?.(line);
  });
  return { proc, waiting };
}

const sessions = new Map();
const canned = (id, result) => JSON.stringify({ jsonrpc: '2.0', id, result });

const server = createServer((req, res) => {
  if (req.method === 'DELETE') {
    sessions.get(req.headers['mcp-session-id'])?.proc?.kill();
    sessions.delete(req.headers['mcp-session-id']);
    return res.writeHead(200).end();
  }
  if (req.method !== 'POST') return res.writeHead(405).end();
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    // Only to tell a request from a notification, and initialize from the rest.
    const head = body.subarray(0, 200).toString();
    const isRequest = /"id"\s*:/.test(head);
    const initialize = head.includes('"initialize"');
    let sid = req.headers['mcp-session-id'];
    if (initialize) {
      sid = randomUUID();
      sessions.set(sid, noChild ? {} : child());
    }
    const s = sessions.get(sid);
    if (!s) return res.writeHead(404).end();
    if (noChild) {
      if (!isRequest) return res.writeHead(202).end();
      const id = JSON.parse(body).id;
      const answer = initialize
        ? canned(id, { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'floor', version: '0' } })
        : canned(id, { content: [{ type: 'text', text: 'hello from the bench' }] });
      return res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(answer);
    }
    if (isRequest) s.waiting.push((line) => res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': sid }).end(line));
    s.proc.stdin.write(Buffer.concat([body, Buffer.from('\n')]));
    if (!isRequest) res.writeHead(202).end();
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`floor listening on http://127.0.0.1:${server.address().port}/mcp\n`));
process.on('SIGTERM', () => {
  for (const s of sessions.values()) s.proc?.kill();
  process.exit(0);
});
