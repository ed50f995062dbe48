// A light stdio MCP server for the soak (no SDK, a few MiB): echo, progress, and an elicitation.
import { createInterface } from 'node:readline';

const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
const pending = new Map(); // our request id -> resolve
let nextId = 1;
const tools = [
  { name: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
  { name: 'progress', inputSchema: { type: 'object', properties: { steps: { type: 'integer' }, delayMs: { type: 'integer' } } } },
  { name: 'ask', inputSchema: { type: 'object', properties: { question: { type: 'string' } } } },
];
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function call(id, params) {
  const a = params.arguments ?? {};
  if (params.name === 'echo') return text(String(a.text));
  if (params.name === 'progress') {
    const token = params._meta?.progressToken;
    for (let i = 1; i <= a.steps; i++) {
      if (token !== undefined)
        send({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: i, total: a.steps } });
      await sleep(a.delayMs ?? 10);
    }
    return text(`done ${a.steps}`);
  }
  if (params.name === 'ask') {
    const rid = `s${nextId++}`;
    const answer = new Promise((r) => pending.set(rid, r));
    send({
      jsonrpc: '2.0',
      id: rid,
      method: 'elicitation/create',
      params: { message: a.question, requestedSchema: { type: 'object', properties: { answer: { type: 'string' } } } },
    });
    const r = await answer;
    return text(JSON.stringify(r.result ?? r.error));
  }
  throw new Error(`unknown tool ${params.name}`);
}

createInterface({ input: process.stdin }).on('line', async (line) => {
  if (!line.trim()) return;
  const m = JSON.parse(line);
  if (m.id !== undefined && m.method === undefined) {
    pending.get(m.id)?.(m);
    pending.delete(m.id);
    return;
  }
  if (m.id === undefined) return; // notifications
  try {
    let result;
    if (m.method === 'initialize')
      result = { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'soak', version: '1' } };
    else if (m.method === 'ping') result = {};
    else if (m.method === 'tools/list') result = { tools };
    else if (m.method === 'tools/call') result = await call(m.id, m.params);
    else return send({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `no method ${m.method}` } });
    send({ jsonrpc: '2.0', id: m.id, result });
  } catch (e) {
    send({ jsonrpc: '2.0', id: m.id, error: { code: -32603, message: e.message } });
  }
});
