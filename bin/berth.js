#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli. The npm package (berth-mcp) ships dist/ built; in a checkout, run
// `npm run build` (npm test and npm start do) after `npm ci`.
import('../dist/cli/main.js')
  .then((cli) => cli.main())
  .catch((err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && /dist[\\/]cli[\\/]main\.js/.test(String(err.message))) {
      console.error('berth: dist/ is missing; in a checkout, run `npm run build` first');
      process.exit(1);
    }
    throw err;
  });
