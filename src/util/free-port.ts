// A TCP port nothing listens on right now: bound with port 0, read, released. Another process may take it before
// the caller does; every caller binds it soon after and fails loudly if it is gone.
import { createServer } from 'node:net';

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
