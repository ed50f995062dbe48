// A hostile image author against berth's image runtimes (issue 18): images built here with umoci (as root) carry a
// 0666 device node (the harmless /dev/null, 1:3), a setuid-root node as the server itself, symlinks pointing out of
// the image at host files, a HOME and a WorkingDir that climb out with '..' or through a symlink, the C library's
// loader variables (LD_DEBUG_OUTPUT naming a host path) in their Env, the root user, an entrypoint that does not
// exist, an Env too large to exec, and layers whose tar entries climb out ('../../outside', a write through a symlink
// to a host directory, a hard link to a host file). The server (fixtures/images/hostile-server.ts) probes from
// inside and says what it saw; the test looks at the host from outside. Every host path the images aim at is a
// canary directory or file this test made, never a real host file. Under namespace and gVisor, network none.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { SANDBOX_UIDS } from '../src/sandbox/uids.ts';
import { connect, ROOT, startBerth, textOf, type BerthProcess } from './helpers/berth.ts';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const ESBUILD = join(ROOT, 'node_modules', '.bin', 'esbuild');
const IMAGE_PATH = '/usr/local/bin:/usr/bin:/bin';

function missingTools(): string | false {
  if (process.getuid?.() !== 0) return 'the hostile images need root (device nodes, setuid files, image owners)';
  const missing = ['umoci', 'skopeo', 'ldd', 'tar', 'mknod', 'setpriv'].filter((t) => spawnSync('which', [t]).status !== 0);
  if (!existsSync(ESBUILD)) missing.push('esbuild');
  return missing.length ? `not installed: ${missing.join(', ')}` : false;
}
const skipAll = missingTools();
if (skipAll) console.log(`# SKIP hostile image tests: ${skipAll}`);

/** Everything this file makes. 0755: uid 65534 must be able to reach the canaries, so only the sandbox stops it. */
const scratch = mkdtempSync(join(tmpdir(), 'berth-image-hostile-'));
chmodSync(scratch, 0o755);
after(() => rmSync(scratch, { recursive: true, force: true }));
const cache = join(scratch, 'cache');
const layout = join(scratch, 'layout');
/** Host directories the images aim at (their loader output, HOME, WorkingDir, layer writes): root's, 0755. */
const canaries = {
  ld: join(scratch, 'canary-ld'),
  dotdot: join(scratch, 'canary-dotdot'),
  link: join(scratch, 'canary-link'),
  layer: join(scratch, 'canary-layer'),
};
/** A host file any host user could read (0644): only the sandbox keeps the server from it. */
const secretFile = join(scratch, 'host-secret.txt');
const SECRET = `host-secret-${process.pid}-${Date.now()}`;
/** A registry auth file with a fake credential, given to berth as REGISTRY_AUTH_FILE. */
const authFile = join(scratch, 'auth.json');
const FAKE_CREDENTIAL = `fake-registry-password-${process.pid}`;

/** Runs a build step; on failure the error names it and carries its stderr. */
async function step(cmd: string, args: string[]): Promise<void> {
  try {
    await run(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`hostile image build: ${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`, { cause: e });
  }
}

function linkedLibraries(binary: string): string[] {
  const out = spawnSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/g)].map((m) => m[1]!);
}

/** The link name inside the image for a host path (the probe reads /app/link_<path with / as _>). */
const linkFor = (hostPath: string) => `/app/link${hostPath.replace(/\//g, '_')}`;

/** node (setuid root), its libraries, the probe server, a 0666 /dev/null at /evil-dev and symlinks out of the image. */
function fillRootfs(rootfs: string, bundle: string): void {
  const put = (path: string, from: string, mode: number) => {
    const to = join(rootfs, path);
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(realpathSync(from), to);
    chmodSync(to, mode);
  };
  put('/usr/bin/node', process.execPath, 0o4755); // setuid root: the server itself
  for (const lib of linkedLibraries(process.execPath)) put(lib, lib, 0o755);
  put('/app/hostile-server.mjs', bundle, 0o644);
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(
    join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/sbin/nologin\napp:x:1000:1000:app:/home/app:/sbin/nologin\nevil:x:1001:1001:evil:/app/hostdir:/sbin/nologin\n',
  );
  writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\napp:x:1000:\nevil:x:1001:\n');
  mkdirSync(join(rootfs, 'home/app'), { recursive: true });
  chownSync(join(rootfs, 'home/app'), 1000, 1000);
  mkdirSync(join(rootfs, 'tmp'), { recursive: true });
  chmodSync(join(rootfs, 'tmp'), 0o1777);
  const mknod = spawnSync('mknod', ['-m', '0666', join(rootfs, 'evil-dev'), 'c', '1', '3']);
  if (mknod.status !== 0) throw new Error(`mknod: ${mknod.stderr}`);
  symlinkSync('/../../../etc/shadow', join(rootfs, 'app/escape'));
  for (const p of [secretFile, authFile]) symlinkSync(p, join(rootfs, linkFor(p)));
  symlinkSync(canaries.link, join(rootfs, 'app/hostdir'));
}

/** umoci config of `tag` from `from`: every image setting the tests vary. */
async function configure(
  tag: string,
  o: { from?: string; entrypoint?: string[]; cmd?: string[]; env?: string[]; workdir?: string; user?: string },
) {
  const a = ['config', '--image', `${layout}:${o.from ?? 'base'}`, '--tag', tag];
  for (const e of o.entrypoint ?? []) a.push('--config.entrypoint', e);
  for (const c of o.cmd ?? []) a.push('--config.cmd', c);
  for (const e of o.env ?? []) a.push('--config.env', e);
  if (o.workdir) a.push('--config.workingdir', o.workdir);
  if (o.user) a.push('--config.user', o.user);
  await step('umoci', a);
}

/** The loader's debug output, named by the image: if a host program of berth's reads it, the file appears here. */
const ldDebugOutput = () => join(canaries.ld, 'ld-debug');
const DOTDOT_DIR = () => `/../../../../../../../../../../..${canaries.dotdot}/work`;

async function buildImages(): Promise<void> {
  const work = join(scratch, 'build');
  mkdirSync(work);
  const bundle = join(work, 'hostile-server.mjs');
  const banner = "import { createRequire as __imageRequire } from 'node:module'; const require = __imageRequire(import.meta.url);";
  await step(ESBUILD, [
    join(HERE, 'fixtures/images/hostile-server.ts'),
    '--bundle',
    '--platform=node',
    '--format=esm',
    `--banner:js=${banner}`,
    `--outfile=${bundle}`,
    '--log-level=warning',
  ]);
  await step('umoci', ['init', '--layout', layout]);
  await step('umoci', ['new', '--image', `${layout}:base`]);
  // An empty image for the layer attacks: its unpacking is all that is tried.
  await step('umoci', ['new', '--image', `${layout}:empty`]);
  const unpacked = join(work, 'unpacked');
  await step('umoci', ['unpack', '--image', `${layout}:base`, unpacked]);
  fillRootfs(join(unpacked, 'rootfs'), bundle);
  await step('umoci', ['repack', '--image', `${layout}:base`, unpacked]);
  const server = { entrypoint: ['node'], cmd: ['/app/hostile-server.mjs'] };
  const env = [`PATH=${IMAGE_PATH}`, 'HOME=/home/app'];
  await configure('probe', {
    ...server,
    // The C library's loader, told to write its debug output to a host path: only host programs started with the
    // image's environment (as root) would write it there.
    env: [...env, 'LD_DEBUG=files', `LD_DEBUG_OUTPUT=${ldDebugOutput()}`],
    workdir: '/app',
    user: '1000:1000',
  });
  await configure('root', { ...server, env, workdir: '/app', user: '0:0' });
  // WorkingDir climbs out with '..' (umoci keeps it as written); HOME (umoci sets it from /etc/passwd: evil's home) is
  // a symlink to a host directory. berth prepares both, as root, before the sandbox exists; the session then fails, as
  // its working directory does not exist inside.
  await configure('escapes', { ...server, env: [`PATH=${IMAGE_PATH}`], workdir: DOTDOT_DIR(), user: '1001:1001' });
  await configure('noentry', { entrypoint: ['/does/not/exist'], env, workdir: '/app', user: '1000:1000' });
  // 3 x 8000 variables of ~130 bytes: an environment over Linux's 2 MiB argument limit, so nothing can exec with it.
  await configure('hugeenv', { ...server, env, workdir: '/app', user: '1000:1000' });
  for (let part = 0; part < 3; part++) {
    const vars = Array.from({ length: 8000 }, (_, i) => `HUGE_${part}_${i}=${'x'.repeat(120)}`);
    await configure('hugeenv', { from: 'hugeenv', env: vars });
  }
  await buildLayerAttacks(work);
  rmSync(work, { recursive: true, force: true });
}

/** Layers no tool would write: tar entries that climb out of the root, or reach the host through a link. */
async function buildLayerAttacks(work: string): Promise<void> {
  const src = join(work, 'tarsrc');
  mkdirSync(src);
  writeFileSync(join(src, 'outside'), 'escaped\n');
  writeFileSync(join(src, 'pwned'), 'written through a symlink\n');
  // '../' entries at several depths: the deepest would land beside the cache, in this test's scratch directory.
  const climbs = ['../../outside-2', '../../../outside-3', '../../../../outside-4', '../../../../../outside-5'];
  const escape = join(work, 'escape.tar');
  const transforms = climbs.map((c) => `--transform=s,^outside$,${c},`);
  // One entry per depth: the file is archived once per transform.
  await step('tar', ['-P', '-cf', escape, '-C', src, transforms[0]!, 'outside']);
  for (const t of transforms.slice(1)) await step('tar', ['-P', '-rf', escape, '-C', src, t, 'outside']);
  // A symlink to a host directory, then a file written through it in a later layer.
  const linkLayer = join(work, 'link.tar');
  mkdirSync(join(work, 'linksrc/app'), { recursive: true });
  symlinkSync(canaries.layer, join(work, 'linksrc/app/hostdir'));
  await step('tar', ['-P', '-cf', linkLayer, '-C', join(work, 'linksrc'), 'app']);
  const through = join(work, 'through.tar');
  await step('tar', ['-P', '-cf', through, '-C', src, '--transform=s,^pwned$,app/hostdir/pwned,', 'pwned']);
  await step('umoci', ['raw', 'add-layer', '--image', `${layout}:empty`, '--tag', 'layer-escape', escape]);
  await step('umoci', ['raw', 'add-layer', '--image', `${layout}:layer-escape`, linkLayer]);
  await step('umoci', ['raw', 'add-layer', '--image', `${layout}:layer-escape`, through]);
  // A hard link to a host file (its target climbs out with '..'): the file is archived, then deleted from the tar.
  const hl = join(work, 'hardlink.tar');
  copyFileSync(secretFile, join(work, 'secret'));
  spawnSync('ln', [join(work, 'secret'), join(work, 'secret-hl')]);
  const rel = `../../../../../../../../../..${work}/secret`;
  await step('tar', [
    '-P',
    '-cf',
    hl,
    `--transform=s,^${work}/secret-hl$,app/hardlink,r`,
    `--transform=s,^${work}/secret$,${rel},h`,
    join(work, 'secret'),
    join(work, 'secret-hl'),
  ]);
  // The first member was renamed by the 'h' transform too: deleted by that name, it leaves the link alone.
  await step('tar', ['-P', '--delete', '-f', hl, rel]);
  await step('umoci', ['raw', 'add-layer', '--image', `${layout}:empty`, '--tag', 'layer-hardlink', hl]);
}

let built: Promise<void> | undefined;
before(async () => {
  if (skipAll) return;
  for (const dir of Object.values(canaries)) mkdirSync(dir, { mode: 0o755 });
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o644 });
  const auth = Buffer.from(`berth-test:${FAKE_CREDENTIAL}`).toString('base64');
  writeFileSync(authFile, JSON.stringify({ auths: { 'registry.invalid': { auth } } }), { mode: 0o600 });
  built ??= buildImages().then(prefetchAll);
  await built;
});

const RUNTIME_TAGS = ['probe', 'root', 'escapes', 'noentry', 'hugeenv'];
/**
 * Fills the cache ahead of the berths (two unpacks at a time): berth resolves every runtime's image before it listens,
 * and six unpacks of a node layer outlast its helper's wait on a loaded machine.
 */
async function prefetchAll(): Promise<void> {
  const queue = [...RUNTIME_TAGS];
  const worker = async () => {
    for (let tag = queue.shift(); tag; tag = queue.shift())
      await step(process.execPath, [join(ROOT, 'bin/berth.js'), 'image', 'prefetch', `oci:${layout}:${tag}`, '--cache', cache]);
  };
  await Promise.all([worker(), worker()]);
}

/** A canary directory's owner, mode and contents: what an escape to the host would change. */
function canaryState(dir: string): { uid: number; mode: number; names: string[] } {
  const s = statSync(dir);
  return { uid: s.uid, mode: s.mode & 0o7777, names: readdirSync(dir).sort() };
}
const CANARY_UNTOUCHED = { uid: 0, mode: 0o755, names: [] as string[] };

let configs = 0;
async function serveRuntimes(runtimes: Record<string, Record<string, unknown>>) {
  const file = join(scratch, `berth-${++configs}.yaml`);
  writeFileSync(file, JSON.stringify({ server: { port: 0 }, runtimes }));
  const berth = await startBerth(['serve', '--config', file], { REGISTRY_AUTH_FILE: authFile });
  const origin = new URL(berth.url).origin;
  return { berth, url: (name: string) => `${origin}/runtimes/${name}/mcp`, origin, config: file };
}

type Session = Awaited<ReturnType<typeof connect>>;
async function call(s: Session, tool: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  return JSON.parse(textOf(await s.client.callTool({ name: tool, arguments: args }))) as Record<string, unknown>;
}
async function end(s: Session): Promise<void> {
  await s.transport.terminateSession().catch(() => undefined);
  await s.client.close();
}
/** A session that must not start: what the client was told. */
async function refused(url: string): Promise<string> {
  try {
    const s = await connect(url);
    await end(s);
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail(`a session of ${url} started`);
}

interface Probe {
  uid: number;
  euid: number;
  cwd: string;
  env: Record<string, string>;
  status: string;
  devRead: string;
  devWrite: string;
  escape: string;
  reads: Record<string, string>;
  links: Record<string, string>;
  pid1Environ: string;
  processes: Array<{ pid: number; cmdline: string; environ: string }>;
  files: string[];
}
const probe = async (s: Session) => (await call(s, 'probe', { hostPaths: [secretFile, authFile] })) as unknown as Probe;

/** Host processes running the hostile server (namespace: real host processes, bwrap's included), with their uids. */
function hostServerUids(): number[][] {
  const uids: number[][] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('/app/hostile-server.mjs')) continue;
      const line = /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
      uids.push(line.split(/\s+/).map(Number));
    } catch {
      // gone meanwhile
    }
  }
  return uids;
}

/** Waits (bounded) until berth's log says `what`: a server's stderr is logged as it arrives. */
async function untilLogged(berth: BerthProcess, what: RegExp, message: string): Promise<void> {
  for (const deadline = Date.now() + 20_000; !what.test(berth.logs());) {
    if (Date.now() > deadline) assert.fail(`${message}: not logged within 20 s\n${berth.logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const asNobody = (args: string[]) =>
  spawnSync('setpriv', [`--reuid=65534`, `--regid=65534`, '--clear-groups', '--', ...args], { encoding: 'utf8' });

const DRIVERS = { namespace: namespaceDriver, gvisor: gvisorDriver };
async function driverSkip(driver: keyof typeof DRIVERS): Promise<string | false> {
  if (skipAll) return skipAll;
  const p = await DRIVERS[driver].probe(ROOT);
  if (p.ok) return false;
  console.log(`# SKIP hostile image tests under ${driver}: ${p.reason}`);
  return `${driver} driver unavailable here: ${p.reason}`;
}

for (const driver of ['namespace', 'gvisor'] as const) {
  const skip = await driverSkip(driver);
  describe(`a hostile image under isolation ${driver}, network none`, { skip }, () => {
    let b: Awaited<ReturnType<typeof serveRuntimes>>;
    before(async () => {
      await built;
      const common = { isolation: driver, network: 'none', upstream: 'stdio', warmPool: 0, imageCache: { dir: cache } };
      const runtimes: Record<string, Record<string, unknown>> = {};
      for (const tag of RUNTIME_TAGS) runtimes[tag] = { ...common, image: `oci:${layout}:${tag}` };
      b = await serveRuntimes(runtimes);
    });
    after(() => b?.berth.stop());

    test('device node, setuid root, symlinks out, credentials: the server sees none of the host', async () => {
      const s = await connect(b.url('probe'));
      try {
        const p = await probe(s);
        assert.match(p.devRead, /^error (EACCES|EPERM|ENXIO|ENOENT)$/, `opening the image's 0666 char device for reading: ${p.devRead}`);
        assert.match(p.devWrite, /^error (EACCES|EPERM|ENXIO|ENOENT)$/, `opening it for writing: ${p.devWrite}`);
        if (driver === 'namespace') assert.match(p.devRead, /^error (EACCES|EPERM)$/, 'nodev: EACCES/EPERM');
        assert.equal(p.uid, 1000, "the image's user");
        assert.equal(p.euid, 1000, 'a setuid-root node does not make its process root (nosuid / no new privileges)');
        assert.match(p.status, /^CapEff:\s+0+$/m, 'no capabilities');
        assert.equal(p.escape, 'error ENOENT', '/app/escape -> /../../../etc/shadow resolves inside the image, which has none');
        for (const [path, got] of Object.entries({ ...p.reads, ...p.links }))
          assert.ok(
            !got.includes(SECRET) && !got.includes(FAKE_CREDENTIAL) && got.startsWith('error'),
            `host file ${path} read from inside`,
          );
        const seen = JSON.stringify([p.env, p.pid1Environ, p.processes]);
        assert.ok(!seen.includes(FAKE_CREDENTIAL), 'the registry credential is in no environment or command line inside');
        assert.ok(!seen.includes('REGISTRY_AUTH_FILE') && !seen.includes(authFile), "the auth file's name is not passed in");
        // berth's config file (in the scratch directory) is masked by an empty file at its path: that path, no more.
        assert.deepEqual(
          p.files.filter((f) => f.startsWith(scratch) && !b.config.startsWith(f)),
          [],
          "none of the test's host files is in the sandbox's tree",
        );
        assert.equal(p.env.PATH, IMAGE_PATH);
      } finally {
        await end(s);
      }
    });

    test("the image's loader variables reach only the server, never a host program of berth's", async () => {
      const s = await connect(b.url('probe'));
      try {
        const p = await probe(s);
        assert.equal(p.env.LD_DEBUG_OUTPUT, ldDebugOutput(), 'the server gets the variable the image sets');
        // Nor is the image's environment on any host command line (every host user may read one), while it runs.
        const shown = readdirSync('/proc')
          .filter((d) => /^\d+$/.test(d))
          .filter((pid) => {
            try {
              return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(ldDebugOutput());
            } catch {
              return false; // gone meanwhile
            }
          });
        assert.deepEqual(shown, [], `processes showing the image's environment on their command line: ${shown.join(', ')}`);
      } finally {
        await end(s);
      }
      // LD_DEBUG_OUTPUT names a host path: a host program run with the image's environment (nsenter and setpriv run
      // as root) would have written its loader's log there.
      assert.deepEqual(canaryState(canaries.ld), CANARY_UNTOUCHED, 'nothing written to the host path the image named');
    });

    test("the image's user 0:0 is no one outside, with no capabilities", async () => {
      const s = await connect(b.url('root'));
      try {
        const p = await probe(s);
        assert.equal(p.uid, 0, 'root inside, as the image says');
        assert.match(p.status, /^CapEff:\s+0+$/m, 'without capabilities');
        // gVisor's Sentry serves 1:3 as its own /dev/null (no host device is opened): root inside may open that.
        if (driver === 'namespace') assert.match(p.devWrite, /^error (EACCES|EPERM)$/, 'root inside still cannot open the device node');
        if (driver === 'namespace') {
          const uids = hostServerUids();
          assert.ok(uids.length > 0, 'the server is a host process under namespace');
          // No one: the sandbox's own unprivileged uid (src/sandbox/uids.ts), real, effective, saved and filesystem alike.
          for (const u of uids) {
            assert.equal(new Set(u).size, 1, `one uid: ${u}`);
            assert.ok(u[0]! >= SANDBOX_UIDS.first && u[0]! < SANDBOX_UIDS.first + SANDBOX_UIDS.count, `on the host it is uid ${u[0]}`);
          }
        }
      } finally {
        await end(s);
      }
    });

    test('a WorkingDir that climbs out with .. and a HOME through a symlink to a host directory reach nothing of the host', async () => {
      const why = await refused(b.url('escapes'));
      assert.match(why, /could not be started/, `the session is refused (its working directory is not in the image): ${why}`);
      await untilLogged(b.berth, /chdir|working directory/, "the reason (the working directory) in berth's log");
      assert.deepEqual(canaryState(canaries.dotdot), CANARY_UNTOUCHED, 'the host directory the WorkingDir climbed to with .. is untouched');
      assert.deepEqual(canaryState(canaries.link), CANARY_UNTOUCHED, 'the host directory the HOME symlink names is untouched');
    });

    test('an entrypoint that does not exist, or an Env too large to exec: the session fails with a reason, berth stays up', async () => {
      const missing = await refused(b.url('noentry'));
      assert.match(missing, /could not be started/, `the session is refused: ${missing}`);
      await untilLogged(b.berth, /does\/not\/exist/, "the reason (the missing entrypoint) in berth's log");
      // 24,000 variables, 3 MiB: more than bubblewrap takes (namespace; refused before anything starts); gVisor's own kernel takes them.
      if (driver === 'namespace') {
        const huge = await refused(b.url('hugeenv'));
        assert.match(huge, /could not be started/, `the session is refused: ${huge}`);
        assert.match(huge, /the image's environment has 240\d\d variables: under isolation namespace a server gets at most \d+/, huge);
      } else {
        const s = await connect(b.url('hugeenv'));
        const size = (await call(s, 'envSize')) as { count: number; bytes: number };
        assert.ok(size.count > 24_000 && size.bytes > 3_000_000, `the server has the image's whole environment: ${JSON.stringify(size)}`);
        await end(s);
      }
      const health = await fetch(`${b.origin}/healthz`);
      assert.equal(health.status, 200, 'berth still serves');
      const s = await connect(b.url('probe'));
      await end(s);
    });

    test("session A's overlay and processes are not visible to session B", async () => {
      const a = await connect(b.url('probe'));
      const z = await connect(b.url('probe'));
      try {
        const mark = `mark-${driver}-${process.pid}`;
        const { written } = (await call(a, 'mark', { mark })) as { written: string[] };
        assert.ok(written.includes('/home/app'), `A wrote into its overlay of the image (its home): ${written.join(' ')}`);
        assert.deepEqual(await call(a, 'look', { mark }), { found: written, process: true }, 'A sees its own marks');
        assert.deepEqual(await call(z, 'look', { mark }), { found: [], process: false }, "B sees none of A's files or processes");
      } finally {
        await Promise.all([end(a), end(z)]);
      }
    });

    test('the image cache and its unpacked roots are not readable by uid 65534 on the host', () => {
      const digests = readdirSync(cache).filter((n) => n.startsWith('sha256-'));
      assert.ok(digests.length >= 4, `the images are cached: ${digests.join(' ')}`);
      assert.equal(statSync(cache).mode & 0o777, 0o700);
      assert.notEqual(asNobody(['ls', cache]).status, 0, 'uid 65534 cannot list the cache');
      for (const d of digests) {
        assert.notEqual(asNobody(['ls', join(cache, d, 'rootfs')]).status, 0, `uid 65534 cannot list ${d}/rootfs`);
        assert.notEqual(asNobody(['cat', join(cache, d, 'berth-image.json')]).status, 0, `nor read ${d}/berth-image.json`);
        assert.notEqual(asNobody(['cat', join(cache, d, 'rootfs/evil-dev')]).status, 0, `nor open ${d}'s device node`);
      }
    });
  });
}

describe('layers whose entries climb out of the root', { skip: skipAll }, () => {
  /** `berth image prefetch` of a tag into its own cache: its exit code and what it said. */
  const prefetch = (tag: string, dir: string) =>
    spawnSync(process.execPath, ['bin/berth.js', 'image', 'prefetch', `oci:${layout}:${tag}`, '--cache', dir], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
  /** What the layers' entries are called, anywhere under the scratch directory but inside an unpacked root. */
  const strays = () =>
    (readdirSync(scratch, { recursive: true }) as string[]).filter(
      (p) =>
        /outside-|pwned|app\/hardlink/.test(p) && !/^layer-cache\/[^/]+\/sha256-[0-9a-f]+\/rootfs\//.test(p) && !p.startsWith('layout/'),
    );

  test("'../' entries and a write through a symlink to a host directory stay inside the unpacked root", async () => {
    await built;
    const dir = join(scratch, 'layer-cache', 'escape');
    const r = prefetch('layer-escape', dir);
    assert.equal(r.status, 0, `umoci unpacked it (containing the entries): ${r.stdout}${r.stderr}`);
    const digest = readdirSync(dir).find((n) => n.startsWith('sha256-'))!;
    const rootfs = join(dir, digest, 'rootfs');
    assert.equal(readFileSync(join(rootfs, 'outside-5'), 'utf8'), 'escaped\n', "'../' entries land at the root's top");
    assert.deepEqual(strays(), [], 'nothing outside the cache');
    assert.deepEqual(canaryState(canaries.layer), CANARY_UNTOUCHED, 'nothing written through the symlink into the host directory');
    assert.equal(readFileSync(join(rootfs, canaries.layer, 'pwned'), 'utf8'), 'written through a symlink\n', 'the write went inside');
  });

  test('a hard link to a host file is refused at unpack, with the reason', async () => {
    await built;
    const dir = join(scratch, 'layer-cache', 'hardlink');
    const r = prefetch('layer-hardlink', dir);
    assert.notEqual(r.status, 0, `refused: ${r.stdout}`);
    assert.match(r.stderr, /cannot unpack it.*(link|no such file)/i, r.stderr);
    assert.deepEqual(
      readdirSync(dir).filter((n) => !n.startsWith('.')),
      [],
      'no image is left in the cache',
    );
    assert.equal(statSync(secretFile).nlink, 1, 'the host file gained no link');
    assert.deepEqual(strays(), []);
  });
});
