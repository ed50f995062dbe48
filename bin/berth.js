#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/cli. The npm package (berth-mcp) ships dist/ built; in a checkout, run
// `npm run build` (npm test and npm start do) after `npm ci`.
// Older Node fails later with an error that names something else (a missing API): say what is needed first.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 18)) {
  console.error(
    `berth: needs Node.js 20.18 or later; this is ${process.version} (${process.execPath}). Debian 12 and Ubuntu 24.04 ship Node 18: install a current one from nodejs.org or your distribution's backports.`,
  );
  process.exit(1);
}
import('../dist/cli/main.js')
  .then((cli) => cli.main())
  .catch((err) => {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND' && /dist[\\/]cli[\\/]main\.js/.test(String(err.message))) {
      console.error('berth: dist/ is missing; in a checkout, run `npm run build` first');
      process.exit(1);
    }
    throw err;
  });
