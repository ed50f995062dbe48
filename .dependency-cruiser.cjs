// The layers of src/, bottom first: a module imports only from its own layer or the ones below, never above, and
// nothing imports in a circle. `npm test` (npm run lint, from scripts/test-all.sh) checks both on every change. See ARCHITECTURE.md.
const LAYERS = [
  ['wire'],
  ['config', 'util', 'observe', 'log.ts'],
  ['sandbox', 'security'],
  ['relay'],
  ['session'],
  ['bridge', 'cluster'],
  ['runtime'],
  ['http', 'dashboard'],
  ['app'],
  ['cli', 'index.ts'],
];
/** Programs of their own: the CLI's MCP client and the bundled demo server import nothing of berth's server. */
const STANDALONE = ['client', 'demo'];
/** Parts of one layer that stay out of each other's way. */
const SIBLINGS = [
  ['sandbox', 'security'],
  ['bridge', 'cluster'],
];

const path = (names) => `^src/(${names.map((n) => n.replace('.', '\\.')).join('|')})(/|$)`;
const forbidden = [
  { name: 'no-circular', severity: 'error', comment: 'an import circle', from: {}, to: { circular: true } },
  { name: 'not-to-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
];
LAYERS.forEach((layer, i) => {
  // The CLI is where the client's commands live; below it, nothing reaches the standalone programs.
  const above = LAYERS.slice(i + 1).flat().concat(layer.includes('cli') ? ['demo'] : STANDALONE);
  if (above.length) forbidden.push({ name: `${layer[0]}-imports-upward`, severity: 'error', comment: `${layer.join(', ')} may import only from layers below`, from: { path: path(layer) }, to: { path: path(above) } });
});
for (const s of STANDALONE) {
  forbidden.push({ name: `${s}-is-standalone`, severity: 'error', from: { path: path([s]) }, to: { path: '^src/', pathNot: path([s]) } });
  if (s === 'demo') forbidden.push({ name: `nothing-imports-${s}`, severity: 'error', from: { path: '^src/', pathNot: path([s]) }, to: { path: path([s]) } });
}
for (const [a, b] of SIBLINGS) {
  forbidden.push({ name: `${a}-not-${b}`, severity: 'error', from: { path: path([a]) }, to: { path: path([b]) } });
  forbidden.push({ name: `${b}-not-${a}`, severity: 'error', from: { path: path([b]) }, to: { path: path([a]) } });
}

// The front door asks the cluster where a request is served, once; the endpoints never do.
forbidden.push({ name: 'runtime-not-cluster', severity: 'error', comment: 'runtime endpoints know nothing of the cluster', from: { path: path(['runtime']) }, to: { path: path(['cluster']) } });

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a layer that names a type from above depends on it all the same.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Packages are resolved by their "exports" maps, as Node does (the MCP SDK's subpaths live there).
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], mainFields: ['module', 'main', 'types'] },
    exclude: { path: '^src/dashboard/static/' },
  },
};
