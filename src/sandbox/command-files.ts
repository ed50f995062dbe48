// What a command needs to see of the host to run at all: its program and the scripts it names, with their package
// roots (a node package with its node_modules, a Python virtualenv or project, a tool's install prefix). A sandbox
// shows these read-only without flags, so `berth run -- node /srv/mcp/server.js` works wherever berth starts; a
// command whose files cannot be found, or whose root would expose the host or other sessions, is refused at start.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { homes, unsafeRuntimeDir, which } from './host.js';

/** Files that mark a directory as the root of what a script needs (its dependencies live under it). */
const ROOT_MARKERS = ['package.json', 'pyvenv.cfg', 'pyproject.toml', 'requirements.txt', 'setup.py', 'go.mod', 'Cargo.toml', 'deno.json'];
/** Never auto-mounted whole: they are the host, not a package. */
const TOO_WIDE = new Set([
  '/',
  '/root',
  '/home',
  '/etc',
  '/var',
  '/opt',
  '/srv',
  '/mnt',
  '/media',
  '/run',
  '/tmp',
  '/usr',
  '/usr/local',
  '/usr/local/lib',
]);

const within = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);

/** Never shown whole: the host's top directories, and users' homes (any directory right under /home included). */
function tooWide(dir: string, home: Set<string>): boolean {
  return TOO_WIDE.has(dir) || home.has(dir) || dirname(dir) === '/home';
}

/** The directory a script's dependencies hang from: the nearest marked ancestor, lifted out of node_modules. */
export function packageRoot(file: string, home = homes()): string {
  let found: string | undefined;
  for (let d = dirname(file); ; d = dirname(d)) {
    if (tooWide(d, home)) break;
    if (ROOT_MARKERS.some((m) => existsSync(join(d, m)))) {
      found = d;
      break;
    }
    if (d === dirname(d)) break;
  }
  let root = found ?? dirname(file);
  // A package inside node_modules needs its siblings: the project that holds the outermost node_modules.
  const nm = root.split(sep).indexOf('node_modules');
  if (nm > 0) root = root.split(sep).slice(0, nm).join(sep) || sep;
  return root;
}

/**
 * What a program needs of its install prefix: /opt/node for /opt/node/bin/node (its lib/ holds what it loads), else
 * its package root. A prefix in a user's home (~/.local for ~/.local/bin/x) is shown as its bin/ and lib/ only: the
 * rest of it (~/.local/share) holds the user's data, keyrings among it.
 */
function programRoots(file: string, home: Set<string>): string[] {
  const dir = dirname(file);
  const prefix = dirname(dir);
  if (basename(dir) !== 'bin' || tooWide(prefix, home)) return [packageRoot(file, home)];
  if (![...home].some((h) => within(prefix, h))) return [prefix];
  return [dir, ...(existsSync(join(prefix, 'lib')) ? [join(prefix, 'lib')] : [])];
}

function real(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

/**
 * Host directories to show read-only so the command can run, beyond `visible` (what the sandbox shows anyway:
 * /usr, the runtime directory, configured mounts). Throws, naming the path and the fix, when the program cannot be
 * found or a needed root would expose the host or the session directories.
 */
export function commandRoots(argv: readonly string[], baseDir: string, visible: readonly string[], sessionRoot: string): string[] {
  // /bin, /lib, /lib64 and /sbin are /usr's in every sandbox (symlinks on a merged-/usr host).
  const shown = ['/usr', '/bin', '/lib', '/lib64', '/sbin', baseDir, ...visible];
  const roots: string[] = [];
  const home = homes();
  /** Shows root for path; an argument whose root is too wide is left alone (it may be a file the server opens itself). */
  // A path already visible still needs its root: a script in the runtime directory may load its dependencies from
  // the package above it (the bundled demo, dist/demo/server.js, runs from dist/demo and loads ../../node_modules).
  const need = (path: string, root: string, what: 'program' | 'script') => {
    const isShown = (p: string) => shown.some((v) => within(p, v)) || roots.some((r) => within(p, r));
    if (isShown(root)) return;
    const unsafe = tooWide(root, home) ? `${root} is too wide to show a session` : unsafeRuntimeDir(root, sessionRoot);
    if (unsafe && (what === 'script' || isShown(path))) return;
    if (unsafe)
      throw new Error(
        `the ${what} ${path} needs ${root} visible in the sandbox, but ${unsafe}; move it to a directory of its own or pass --mount with a narrower path`,
      );
    roots.push(root);
  };
  const program = argv[0];
  if (!program) return roots;
  const programPath = program.includes('/') ? resolve(baseDir, program) : which(program);
  const programReal = programPath && real(programPath);
  if (!programPath || !programReal) {
    throw new Error(
      `the command ${JSON.stringify(program)} was not found (${program.includes('/') ? `no such file: ${programPath}` : 'not on PATH'}); berth runs it from ${baseDir}`,
    );
  }
  // The path the sandbox execs (a symlink, say /usr/local/bin/x) and the file it points to must both be visible.
  need(programPath, dirname(programPath), 'program');
  for (const root of programRoots(programReal, home)) need(programReal, root, 'program');
  for (const arg of argv.slice(1)) {
    if (arg.startsWith('-')) continue;
    const path = isAbsolute(arg) ? arg : resolve(baseDir, arg);
    const file = existsSync(path) && statSync(path).isFile() ? real(path) : undefined;
    if (!file) continue;
    need(path, packageRoot(path, home), 'script');
    need(file, packageRoot(file, home), 'script');
  }
  return roots;
}

/** The files a command runs from: its program (resolved as the sandbox will) and the existing files it names. */
export function commandFiles(argv: readonly string[], baseDir: string): { program?: string; files: string[] } {
  const [program, ...args] = argv;
  const files = args
    .filter((a) => !a.startsWith('-'))
    .map((a) => (isAbsolute(a) ? a : resolve(baseDir, a)))
    .filter((p) => existsSync(p) && statSync(p).isFile());
  return { program: program && (program.includes('/') ? resolve(baseDir, program) : which(program)), files };
}
