// A TCP proxy on loopback between a client and berth, whose connections a test can cut: a real network drop,
// seen by both ends as a reset, not a polite close.
import { createServer, connect, type Socket } from 'node:net';

export interface Proxy {
  url: string;
  /** Resets every open connection. */
  sever(): void;
  /** Resets new connections for `ms` (a client's reconnection attempts fail meanwhile). */
  refuseFor(ms: number): void;
  /** Resolves once berth has sent `text` to clients `times` times in all (e.g. the SSE content type: streams begun). */
  seen(text: string, times?: number, timeoutMs?: number): Promise<void>;
  /** Starts counting `text` in what berth sends (call before the traffic to count). */
  watch(text: string): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<Proxy> {
  const t = new URL(target);
  const sockets = new Set<Socket>();
  let refuseUntil = 0;
  /** What berth sent to clients, for seen(): texts watched -> how often seen so far. */
  const watched = new Map<string, number>();
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
    upstream.on('data', (d: Buffer) => {
      const chunk = d.toString('latin1');
      for (const [text, n] of watched) watched.set(text, n + chunk.split(text).length - 1);
    });
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
    async seen(text, times = 1, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while ((watched.get(text) ?? 0) < times) {
        if (Date.now() > deadline)
          throw new Error(`the proxy saw "${text}" ${watched.get(text) ?? 0} times, not ${times}, within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    watch(text) {
      if (!watched.has(text)) watched.set(text, 0);
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
