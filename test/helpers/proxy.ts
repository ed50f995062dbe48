// A TCP proxy on loopback between a client and berth, whose connections a test can cut: a real network drop,
// seen by both ends as a reset, not a polite close.
import { createServer, connect, type Socket } from 'node:net';

export interface Proxy {
  url: string;
  /** Resets every open connection. */
  sever(): void;
  /** Resets new connections for `ms` (a client's reconnection attempts fail meanwhile). */
  refuseFor(ms: number): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<Proxy> {
  const t = new URL(target);
  const sockets = new Set<Socket>();
  let refuseUntil = 0;
  const server = createServer((client) => {
    if (Date.now() < refuseUntil) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect(Number(t.port), t.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}${t.pathname}`,
    sever() {
      for (const s of sockets) s.resetAndDestroy();
    },
    refuseFor(ms) {
      refuseUntil = Date.now() + ms;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
