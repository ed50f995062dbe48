// Entry point: `node dist/demo/server.js` speaks MCP over stdio in its cwd.
// stdout carries only JSON-RPC; diagnostics go to stderr.
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { createDemoServer } from './app.js';

const server = createDemoServer(process.cwd());
let closing = false;

async function shutdown(code: number): Promise<void> {
  if (closing) return;
  closing = true;
  await server.close().catch(() => {});
  process.exit(code);
}

// The SDK's stdio transport does not react to EOF; berth closes stdin to end a
// session, so treat EOF (and a broken stdout pipe) as a request to exit.
process.stdin.on('end', () => void shutdown(0));
process.stdout.on('error', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));
server.server.onclose = () => void shutdown(0);

try {
  await server.connect(new StdioServerTransport());
} catch (err) {
  console.error('berth demo server failed to start:', err);
  process.exit(1);
}
