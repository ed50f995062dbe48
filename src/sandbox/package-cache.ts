// `npx -y PACKAGE` (and `npm exec`) servers: berth installs the package once per runtime, outside every sandbox,
// into a package directory that sessions see read-only; no session downloads anything, so they run with network
// none. The directory is keyed by the runtime's name and the package specs, and reused across berth restarts.
//
// Why berth runs the package's bin itself instead of a sandboxed npx over a pre-filled, read-only npm cache: npx
// writes into its cache (its _npx install tree, its logs, lock files) on every run, so a read-only cache fails or
// depends on npm internals; it also needs npm and a resolvable registry in every sandbox, and costs an npm start
// (hundreds of ms) per session. Running `node BIN` from a plain `npm install --prefix` tree needs nothing but the
// files, which command-files.ts already shows read-only.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import type { Logger } from 'pino';
import { isRoot, SANDBOX_UID, which } from './host.js';

export interface PackageCacheConfig {
  /** Where package directories live (default: packageCacheRoot()). */
  dir?: string;
  /** Install anew at every berth start (once per process) instead of reusing a filled directory. */
  refresh: boolean;
  /** Milliseconds the installer may take. */
  installTimeout: number;
  /** Let packages run their install scripts (as berth's user, outside any sandbox). */
  installScripts: boolean;
}

/** A package runner command, taken apart: what to install, and what to run from it. */
export interface PackageCommand {
  /** Package specs to install (name, name@version, tarball URL...). */
  specs: string[];
  /** The bin to run (npx -p SPEC BIN); else the bin of specs[0], chosen as npx chooses it. */
  bin?: string;
  args: string[];
}

/** Flags of npx / npm exec that change nothing here (berth never prompts, installs regardless). */
const HARMLESS = new Set(['-y', '--yes', '-q', '--quiet', '-s', '--silent', '--prefer-online', '--prefer-offline']);

/**
 * The package runner command in argv, or undefined when it is not one. Throws, saying why, for forms berth cannot
 * serve from a read-only package directory (uvx: uv is not supported yet; npx -c; npx --no).
 */
export function parsePackageCommand(argv: readonly string[]): PackageCommand | undefined {
  const prog = basename(argv[0] ?? '');
  if (prog === 'uvx' || (prog === 'uv' && argv[1] === 'tool' && argv[2] === 'run')) {
    throw new Error(
      `"${argv.join(' ')}": uvx commands are not supported yet (berth fills its shared package cache with npm only; uv is ${which('uv') ? 'installed but not used' : 'not installed on this host'}). Install the tool into a virtualenv and run it by path instead, e.g. python3 -m venv /srv/tool && /srv/tool/bin/pip install PACKAGE, then berth run -- /srv/tool/bin/COMMAND (berth shows the virtualenv to the sandbox read-only)`,
    );
  }
  let rest: string[];
  if (prog === 'npx') rest = argv.slice(1);
  else if (prog === 'npm' && (argv[1] === 'exec' || argv[1] === 'x')) rest = argv.slice(2);
  else return undefined;
  const what = `"${argv.join(' ')}"`;
  const specs: string[] = [];
  let i = 0;
  for (; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-')) break;
    if (HARMLESS.has(a)) continue;
    if (a === '-p' || a === '--package') {
      const spec = rest[++i];
      if (!spec) throw new Error(`${what}: ${a} needs a package spec`);
      specs.push(spec);
    } else if (a.startsWith('--package=')) specs.push(a.slice('--package='.length));
    else if (a === '-c' || a === '--call' || a.startsWith('--call='))
      throw new Error(`${what}: ${a} runs a shell command, which berth does not host; name the package (and its bin with -p) instead`);
    else if (a === '--no' || a === '--no-yes' || a === '--no-install')
      throw new Error(
        `${what}: ${a} runs only an already installed package; run that package's bin by path instead (berth run -- node /path/to/bin.js)`,
      );
    else
      throw new Error(
        `${what}: the ${prog} option ${a} is not supported (berth fills its package cache with npm install; set npm's registry and other options through its environment, e.g. npm_config_registry, or ~/.npmrc)`,
      );
  }
  const first = rest[i];
  if (!first) throw new Error(`${what}: no package named`);
  const args = rest.slice(i + 1);
  // With -p, the first word is the command to run from the installed packages (npx -p pkg cmd).
  return specs.length ? { specs, bin: first, args } : { specs: [first], args };
}

/**
 * Where package directories live: $BERTH_PACKAGE_CACHE, else /var/cache/berth/packages as root (not berth's state
 * directory: that is private to berth's user and often a tmpfs), else $XDG_CACHE_HOME/berth/packages.
 */
export function packageCacheRoot(configured?: string): string {
  if (configured) return configured;
  if (process.env.BERTH_PACKAGE_CACHE) return process.env.BERTH_PACKAGE_CACHE;
  if (isRoot()) return '/var/cache/berth/packages';
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'berth', 'packages');
}

/** The package directory of a runtime's command: its name, plus a digest of what is installed in it. */
export function packageDir(root: string, runtimeName: string, cmd: PackageCommand): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['npm', cmd.specs]))
    .digest('hex')
    .slice(0, 16);
  return join(root, `${runtimeName}-${digest}`);
}

/**
 * How much longer than a server's start-up a runtime's first start may take: an npx command is installed first
 * (up to packageCache.installTimeout); berth run waits that long before it says it listens.
 */
export function installAllowance(config: { command?: string | string[]; image?: string; packageCache: PackageCacheConfig }): number {
  if (config.command === undefined || config.image !== undefined) return 0; // an image is pulled before berth listens
  const argv = Array.isArray(config.command) ? config.command : config.command.trim().split(/\s+/);
  try {
    return parsePackageCommand(argv) ? config.packageCache.installTimeout : 0;
  } catch {
    return 0; // refused at start, before any wait
  }
}

/** Written last into a filled directory: its presence means the install finished. */
const MARKER = '.berth-filled.json';

/** A failed install: the reason, and the installer's last stderr lines. */
export class PackageInstallError extends Error {
  constructor(
    message: string,
    readonly stderrTail: string[],
  ) {
    super(message);
  }
}

/** Fills in flight or done in this process, per package directory (every session of a runtime shares one), each
 * with the argv that runs its command. */
const fills = new Map<string, Promise<string[]>>();

/**
 * The argv (and PATH entry) that runs a package command from its filled package directory, filling it first if
 * needed (once per directory, however many sessions start at once); undefined when argv is no package command.
 * `giveUp` rejecting (berth shutting down) ends the wait, not the install.
 */
export async function packageArgv(
  runtimeName: string,
  argv: readonly string[],
  cfg: PackageCacheConfig,
  log: Logger,
  giveUp?: Promise<never>,
): Promise<{ argv: string[]; binDir: string } | undefined> {
  const cmd = parsePackageCommand(argv);
  if (!cmd) return undefined;
  const root = packageCacheRoot(cfg.dir);
  const dir = packageDir(root, runtimeName, cmd);
  let fill = fills.get(dir);
  if (!fill) {
    fill = ensureFilled(dir, cmd, cfg, log.child({ packageDir: dir })).then(() => commandFrom(dir, cmd));
    fills.set(dir, fill);
    // A failed fill is tried again by the next start (the pool backs off), not remembered as failed forever.
    fill.catch(() => fills.delete(dir));
  }
  const run = await (giveUp ? Promise.race([fill, giveUp]) : fill);
  return { argv: [...run, ...cmd.args], binDir: join(dir, 'node_modules', '.bin') };
}

async function ensureFilled(dir: string, cmd: PackageCommand, cfg: PackageCacheConfig, log: Logger): Promise<void> {
  const what = cmd.specs.join(' ');
  if (!cfg.refresh && existsSync(join(dir, MARKER))) {
    log.info(`package cache: reusing ${dir} for ${what} (remove it, or set packageCache.refresh, to install anew)`);
    return;
  }
  const npm = which('npm');
  if (!npm) throw new PackageInstallError(`cannot install ${what}: npm is not on berth's PATH`, []);
  await mkdir(dirname(dir), { recursive: true, mode: 0o755 });
  sandboxCanRead(dirname(dir));
  await sweepStale(dirname(dir), basename(dir), cfg.installTimeout);
  const tmp = await mkdtemp(`${dir}.filling-`);
  const removeTmp = () => rmSync(tmp, { recursive: true, force: true }); // berth exiting mid-install
  process.once('exit', removeTmp);
  try {
    await chmod(tmp, 0o755); // mkdtemp's 0700 would hide the tree from the sandbox uid
    await writeFile(join(tmp, 'package.json'), JSON.stringify({ private: true, description: `berth package cache: ${what}` }) + '\n');
    const args = [
      'install',
      '--prefix',
      tmp,
      '--no-audit',
      '--no-fund',
      '--no-update-notifier',
      '--omit=dev',
      ...(cfg.installScripts ? [] : ['--ignore-scripts']),
    ];
    // A refresh asks the registry what the spec means now (a new latest), rather than npm's cached answer.
    if (cfg.refresh) args.push('--prefer-online');
    args.push('--', ...cmd.specs);
    const started = performance.now();
    log.info({ installer: `npm ${args.join(' ')}` }, `package cache: installing ${what}`);
    await runInstaller(npm, args, cfg.installTimeout, what, log);
    await writeFile(join(tmp, MARKER), JSON.stringify({ specs: cmd.specs, filledAt: new Date().toISOString() }) + '\n');
    await commit(tmp, dir, cfg.refresh);
    log.info({ ms: Math.round(performance.now() - started) }, `package cache: installed ${what} into ${dir}`);
  } finally {
    process.off('exit', removeTmp);
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Moves a finished install into place; another berth that filled the same directory first wins. */
async function commit(tmp: string, dir: string, replace: boolean): Promise<void> {
  if (replace && existsSync(dir)) {
    const old = `${dir}.old-${randomBytes(4).toString('hex')}`;
    await rename(dir, old);
    await rename(tmp, dir);
    await rm(old, { recursive: true, force: true });
    return;
  }
  try {
    await rename(tmp, dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !existsSync(join(dir, MARKER))) throw e;
  }
}

/** Installs a berth that died mid-install left behind (older than an install may take) are removed. */
async function sweepStale(root: string, name: string, installTimeout: number): Promise<void> {
  for (const e of await readdir(root).catch(() => [] as string[])) {
    if (!e.startsWith(`${name}.filling-`) && !e.startsWith(`${name}.old-`)) continue;
    const s = await stat(join(root, e)).catch(() => undefined);
    if (s && Date.now() - s.mtimeMs > 2 * installTimeout) await rm(join(root, e), { recursive: true, force: true });
  }
}

/** As root, sessions run as uid 65534: every directory above the cache must let it through, or no sandbox can mount it. */
function sandboxCanRead(root: string): void {
  if (!isRoot()) return;
  for (let d = root; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) {
      throw new PackageInstallError(
        `the package cache ${root} cannot be reached by the sandbox user (uid ${SANDBOX_UID}): ${d} has mode ${(statSync(d).mode & 0o777).toString(8).padStart(4, '0')}; set packageCache.dir (or BERTH_PACKAGE_CACHE) to a directory every user may traverse`,
        [],
      );
    }
    if (d === dirname(d)) return;
  }
}

const TAIL_LINES = 20;

function runInstaller(npm: string, args: string[], timeoutMs: number, what: string, log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    // The user's npm configuration applies (npm_config_* variables, ~/.npmrc): berth's environment is npm's.
    const p = spawn(npm, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, npm_config_umask: '0022' }, detached: true });
    const tail: string[] = [];
    let partial = '';
    p.stderr!.setEncoding('utf8').on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop()!;
      tail.push(...lines.filter((l) => l.trim()));
      tail.splice(0, Math.max(0, tail.length - TAIL_LINES));
    });
    // An install left running would outlive berth, and finish into a directory nobody moves into place.
    const killGroup = () => {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    process.once('exit', killGroup);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    timer.unref();
    const fail = (reason: string) => {
      if (partial.trim()) tail.push(partial);
      log.error({ stderr: tail }, `package cache: could not install ${what}: ${reason}`);
      const gist = tail.find((l) => /^npm (error|ERR!) (?!(code|errno|syscall) |\s|A complete log|Log files)/.test(l));
      reject(
        new PackageInstallError(`could not install ${what} into the package cache: ${reason}${gist ? ` (${gist.trim()})` : ''}`, tail),
      );
    };
    p.on('error', (e) => {
      clearTimeout(timer);
      process.off('exit', killGroup);
      fail(`${npm} did not start: ${e.message}`);
    });
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      process.off('exit', killGroup);
      if (timedOut) fail(`npm install took longer than ${timeoutMs} ms (packageCache.installTimeout)`);
      else if (code === 0) resolve();
      else fail(`npm install exited with ${code === null ? `signal ${signal}` : `code ${code}`}`);
    });
  });
}

/** The bin npx would run: the only one, else the one named after the package (without its scope). */
function chooseBin(pkgDir: string): string {
  const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
    name?: string;
    bin?: string | Record<string, string>;
  };
  const name = manifest.name ?? basename(pkgDir);
  const bins = typeof manifest.bin === 'string' ? { [name.replace(/^@[^/]+\//, '')]: manifest.bin } : (manifest.bin ?? {});
  const names = Object.keys(bins);
  const chosen = names.length === 1 ? names[0]! : bins[name.replace(/^@[^/]+\//, '')] ? name.replace(/^@[^/]+\//, '') : undefined;
  if (!chosen) {
    throw new PackageInstallError(
      names.length
        ? `the package ${name} has several bins (${names.join(', ')}) and none named after it; say which: npx -p ${name} BIN`
        : `the package ${name} has no bin to run (its package.json names none)`,
      [],
    );
  }
  return join(pkgDir, bins[chosen]!);
}

/**
 * The argv (without the command's arguments) that runs the command from dir; found once per fill. Node bins run with the host's node named explicitly (not through their
 * `#!/usr/bin/env node`): command-files.ts then shows that node's install to the sandbox, wherever it lives.
 */
function commandFrom(dir: string, cmd: PackageCommand): string[] {
  let file: string, root: string, what: string;
  if (cmd.bin) {
    const link = join(dir, 'node_modules', '.bin', cmd.bin);
    if (!existsSync(link)) {
      const have = existsSync(dirname(link)) ? readdirSync(dirname(link)).join(', ') : 'none';
      throw new PackageInstallError(`no package of ${cmd.specs.join(' ')} provides a bin named ${cmd.bin} (bins: ${have})`, []);
    }
    [file, root, what] = [link, join(dir, 'node_modules'), `the bin ${cmd.bin} of ${cmd.specs.join(' ')}`];
  } else {
    const deps = Object.keys(
      (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {},
    );
    if (deps.length !== 1)
      throw new PackageInstallError(
        `npm install of ${cmd.specs[0]} recorded ${deps.length} packages in ${dir}/package.json, expected 1`,
        [],
      );
    root = join(dir, 'node_modules', deps[0]!);
    file = chooseBin(root);
    what = `the bin ${relative(root, file)} of the package ${deps[0]}`;
  }
  file = realpathSync(file);
  // A package's bin is any path its package.json names, kept verbatim by npm ("../../../etc/x"), and what it runs
  // is shown read-only to every session: only a file of the installed packages is run.
  if (!file.startsWith(realpathSync(root) + sep)) throw new PackageInstallError(`${what} is ${file}, outside the package: refused`, []);
  const first = firstLine(file, what);
  if (!first.startsWith('#!') || /\bnode\b/.test(first)) return [which('node') ?? process.execPath, file];
  accessSync(file, constants.X_OK);
  return [file];
}

/** The shebang line, if any: read on berth's main thread, so never blocking (a FIFO) nor endless (a device); 256
 * bytes, as much of a shebang as the kernel reads. */
function firstLine(file: string, what: string): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    if (!fstatSync(fd).isFile()) throw new PackageInstallError(`${what} (${file}) is not a regular file: refused`, []);
    const head = Buffer.alloc(256);
    return head.toString('utf8', 0, readSync(fd, head, 0, head.length, 0)).split('\n', 1)[0]!;
  } finally {
    closeSync(fd);
  }
}
