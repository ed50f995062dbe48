#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli (built by `npm run build`, run on `npm ci` via `prepare`).
import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    console.error('berth: dist/ is missing; run `npm run build` first');
    process.exit(1);
  }
  throw err;
});
