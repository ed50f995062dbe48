// A node server bundled into one file before it boots in a microVM. Under TCG emulation, loading a server's
// hundreds of modules over 9p is most of a VM's start: the demo server answers 2x sooner bundled (measured in
// docs/benchmarks.md). Only for `node SCRIPT ARGS...` with SCRIPT inside the runtime directory, so the guest can
// put the bundle beside it (in its overlay) and paths relative to the script still hold. Whatever esbuild cannot
// bundle, whose modules look up their own location, or whose bundle fails `node --check`, runs as it is.
// BERTH_MICROVM_BUNDLE=0 turns it off.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

export interface Bundle {
  /** The script it replaces, and the code to put beside it. */
  script: string;
  code: Uint8Array;
}

// CommonJS dependencies call require(); ESM has none. `var`: a module's own top-level `require` then fails the check.
const BANNER = "import { createRequire as __berthCreateRequire } from 'node:module'; var require = __berthCreateRequire(import.meta.url);";

/** Built once per script and modification time, for every session of the runtime. */
const built = new Map<string, Promise<Bundle | undefined>>();

export function bundleFor(argv: string[], runtimeDir: string): Promise<Bundle | undefined> {
  const [node, script] = argv;
  if (process.env.BERTH_MICROVM_BUNDLE === '0' || !node || !script || !/^node(js)?$/.test(basename(node)))
    return Promise.resolve(undefined);
  if (!script.startsWith(`${runtimeDir}/`) || !/\.m?js$/.test(script)) return Promise.resolve(undefined);
  let key: string;
  try {
    key = `${script}@${statSync(script).mtimeMs}`;
  } catch {
    return Promise.resolve(undefined);
  }
  if (!built.has(key)) built.set(key, build(script));
  return built.get(key)!;
}

async function build(script: string): Promise<Bundle | undefined> {
  try {
    const esbuild = await import('esbuild');
    const dir = dirname(script);
    const r = await esbuild.build({
      entryPoints: [script],
      absWorkingDir: dir,
      bundle: true,
      write: false,
      metafile: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      banner: { js: BANNER },
      logLevel: 'silent',
    });
    const code = r.outputFiles[0]!.contents;
    return (await locationFree(dir, r.metafile.inputs)) && syntaxOk(code) ? { script, code } : undefined;
  } catch {
    return undefined; // no esbuild here, or a server it cannot bundle (native addons, dynamic imports of files)
  }
}

/**
 * Whether the bundle runs as the modules did: none uses __dirname or __filename without declaring it (CommonJS
 * globals, absent in an ESM bundle), and only modules in the script's own directory, where the bundle goes, ask
 * for import.meta's location.
 */
async function locationFree(dir: string, inputs: Record<string, unknown>): Promise<boolean> {
  const checks = Object.keys(inputs).map(async (p) => {
    const file = resolve(dir, p);
    const src = await readFile(file, 'utf8').catch(() => '');
    for (const g of ['__dirname', '__filename']) if (src.includes(g) && !new RegExp(`(const|let|var)\\s+${g}\\b`).test(src)) return false;
    return dirname(file) === dir || !/import\.meta\.(url|dirname|filename|resolve)/.test(src);
  });
  return (await Promise.all(checks)).every(Boolean);
}

function syntaxOk(code: Uint8Array): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'berth-bundle-'));
  try {
    writeFileSync(join(dir, 'server.mjs'), code);
    return spawnSync(process.execPath, ['--check', join(dir, 'server.mjs')]).status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
