// The dashboard's static files: its own page, script and styles (src/dashboard/static) and two libraries from
// node_modules (htm's standalone Preact build, uPlot). They hold no secrets, so they load without the admin token;
// every data call the page makes carries the token. A strict CSP allows nothing but these same-origin files.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

// Both src/dashboard (tsx) and dist/dashboard (built) sit two levels below the package root.
const STATIC = fileURLToPath(new URL('../../src/dashboard/static/', import.meta.url));
/** A file of a dependency, through its package exports (htm maps only named entry points). */
const dependency = (specifier: string) => () => fileURLToPath(import.meta.resolve(specifier));

const HTML = 'text/html; charset=utf-8';
const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** URL path -> file and content type. Nothing outside this table is served. */
const FILES: Record<string, { file: () => string; type: string }> = {
  '/admin/': { file: () => `${STATIC}index.html`, type: HTML },
  '/admin/assets/app.js': { file: () => `${STATIC}app.js`, type: JS },
  '/admin/assets/style.css': { file: () => `${STATIC}style.css`, type: CSS },
  '/admin/assets/htm-preact.js': { file: dependency('htm/preact/standalone'), type: JS },
  '/admin/assets/uPlot.js': { file: dependency('uplot/dist/uPlot.esm.js'), type: JS },
  '/admin/assets/uPlot.css': { file: dependency('uplot/dist/uPlot.min.css'), type: CSS },
};

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const cache = new Map<string, Promise<Buffer>>();

export function isAsset(path: string, method: string | undefined): boolean {
  return (method === 'GET' || method === 'HEAD') && Object.hasOwn(FILES, path);
}

export async function serveAsset(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const { file, type } = FILES[path]!;
  let body = cache.get(path);
  if (!body) {
    body = readFile(file());
    cache.set(path, body);
    body.catch(() => cache.delete(path)); // a failed read is retried next time, not cached
  }
  const bytes = await body;
  res.writeHead(200, {
    'content-type': type,
    'content-length': bytes.length,
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cross-origin-resource-policy': 'same-origin',
    // Small files; revalidating each load means an upgraded berth never serves a stale page.
    'cache-control': 'no-cache',
  });
  res.end(req.method === 'HEAD' ? undefined : bytes);
}
