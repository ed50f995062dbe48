// Summarises a V8 CPU profile (node --cpu-prof): the functions with the most self time, and total (inclusive) time
// per part of the program — berth's own files by directory, node's internals by module, packages by name — so a
// profile of bench/where.ts reads as "what each hop costs".
//
//   node --import tsx bench/cpuprofile-top.ts FILE.cpuprofile [--top 30] [--calls N]
// With --calls, times are also given per call (ms). A window.json beside the profile (bench/where.ts --prof writes
// one: the measured window on the monotonic clock, and its calls) limits the summary to that window.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const argv = process.argv.slice(2);
const file = argv.find((a) => !a.startsWith('--'));
if (!file) throw new Error('usage: cpuprofile-top.ts FILE.cpuprofile [--top N] [--calls N]');
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : undefined;
};
const TOP = opt('top') ?? 30;
const windowFile = join(dirname(file), 'window.json');
const win = existsSync(windowFile)
  ? (JSON.parse(readFileSync(windowFile, 'utf8')) as { from: number; to: number; calls: number })
  : undefined;
const CALLS = opt('calls') ?? win?.calls;

const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** Where a frame's code lives: berth's directory (src/relay), node:internal/… module, or a package name. */
function part(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const berth = /\/dist\/(.+)\/[^/]+\.js$/.exec(url) ?? /\/src\/(.+)\/[^/]+\.ts$/.exec(url);
  if (berth && !url.includes('node_modules')) return `berth ${berth[1]}`;
  if (/\/dist\/[^/]+\.js$/.test(url) && !url.includes('node_modules')) return 'berth (top)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `pkg ${pkg[1]}`;
  if (url.startsWith('node:'))
    return url.replace(/^node:(internal\/)?/, 'node ').replace(/\/[^/]+$/, (m) => (url.split('/').length > 3 ? '' : m));
  return url;
}

const self = new Map<number, number>();
let total = 0;
let at = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  at += p.timeDeltas[i]!;
  if (win && (at < win.from || at > win.to)) continue;
  const dt = p.timeDeltas[i + 1] ?? 0;
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
  total += dt;
}

const fnSelf = new Map<string, number>();
const fnTotal = new Map<string, number>();
const partTotal = new Map<string, number>();
const partSelf = new Map<string, number>();
const keyOf = (f: Node['callFrame']) =>
  `${f.functionName || '(anonymous)'}  ${f.url.replace(/^.*\/(node_modules|dist|src)\//, '$1/')}:${f.lineNumber + 1}`;
for (const [id, us] of self) {
  const n = byId.get(id)!;
  const f = n.callFrame;
  const key = keyOf(f);
  fnSelf.set(key, (fnSelf.get(key) ?? 0) + us);
  const own = part(f.url, f.functionName);
  partSelf.set(own, (partSelf.get(own) ?? 0) + us);
  // Inclusive per part and per function: each one on the sample's stack counted once.
  const seen = new Set<string>();
  const fns = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const c = byId.get(cur)!.callFrame;
    seen.add(part(c.url, c.functionName));
    fns.add(keyOf(c));
  }
  for (const s of seen) partTotal.set(s, (partTotal.get(s) ?? 0) + us);
  for (const s of fns) fnTotal.set(s, (fnTotal.get(s) ?? 0) + us);
}

const fmt = (us: number) => {
  const pct = ((us / total) * 100).toFixed(1).padStart(5);
  const ms = (us / 1000).toFixed(0).padStart(6);
  return `${pct}% ${ms} ms${CALLS ? ` ${(us / 1000 / CALLS).toFixed(4)} ms/call` : ''}`;
};
const out: string[] = [`profile ${(total / 1e6).toFixed(2)} s sampled${CALLS ? `, ${CALLS} calls` : ''}`, '', 'self time, top functions:'];
for (const [k, us] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, TOP)) out.push(`  ${fmt(us)}  ${k}`);
out.push('', "inclusive time, top functions (berth's own, and node's http parser entry points):");
const interesting = (k: string) => / {2}(dist|src)\/|parserOn|onStreamRead|processTicksAndRejections|listOnTimeout/.test(k);
for (const [k, us] of [...fnTotal]
  .filter(([k]) => interesting(k))
  .sort((a, b) => b[1] - a[1])
  .slice(0, TOP))
  out.push(`  ${fmt(us)}  ${k}`);
out.push('', 'self time by part (where the CPU was when sampled):');
for (const [k, us] of [...partSelf].sort((a, b) => b[1] - a[1]).slice(0, TOP)) out.push(`  ${fmt(us)}  ${k}`);
out.push('', 'inclusive time by part:');
for (const [k, us] of [...partTotal].sort((a, b) => b[1] - a[1]).slice(0, TOP)) out.push(`  ${fmt(us)}  ${k}`);
process.stdout.write(out.join('\n') + '\n');
