// Issue 18's acceptance, through real berth processes: runtimes that name an OCI image (the AgentCore-style http
// image and the stdio one, built locally by test/fixtures/images/build.ts) serve the official SDK client under the
// namespace and gVisor drivers with network none; sessions write into layers of their own over one shared,
// unchanged unpacked root; the image cache is shared; and what cannot be run is refused when berth starts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { gvisorDriver } from '../src/sandbox/gvisor.ts';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { buildTestImages, ImageToolsMissing, type TestImages } from './fixtures/images/build.ts';
import { connect, ROOT, startBerth, textOf, type BerthProcess } from './helpers/berth.ts';

let images: TestImages | undefined;
let skipAll: string | false = false;
try {
  images = await buildTestImages();
} catch (e) {
  if (!(e instanceof ImageToolsMissing)) throw e;
  skipAll = e.message;
  console.log(`# SKIP image runtime tests: ${e.message}`);
}

/** Everything this file writes: berth configs and the image caches. 0755: uid 65534 (namespace) must pass through. */
const scratch = mkdtempSync(join(tmpdir(), 'berth-image-runtime-'));
chmodSync(scratch, 0o755);
after(() => rmSync(scratch, { recursive: true, force: true }));
/** The image cache the drivers' berths share (and the second start reuses). */
const sharedCache = join(scratch, 'cache');

const IMAGE_PATH = '/usr/local/bin:/usr/bin:/bin';
const STARTUP_MS = 120_000;
const CALL_TIMEOUT_MS = 120_000;

let configs = 0;
function writeConfig(runtimes: Record<string, Record<string, unknown>>): string {
  const file = join(scratch, `berth-${++configs}.yaml`);
  writeFileSync(file, JSON.stringify({ server: { port: 0 }, runtimes }));
  return file;
}

/** A berth serving these runtimes; `url(name)` is a runtime's endpoint. */
async function serveRuntimes(runtimes: Record<string, Record<string, unknown>>) {
  const berth = await startBerth(['serve', '--config', writeConfig(runtimes)]);
  const origin = new URL(berth.url).origin;
  return { berth, url: (name: string) => `${origin}/runtimes/${name}/mcp` };
}

interface ImageLog {
  msg: string;
  image: string;
  rootfs: string;
}
/**
 * What berth logged at start about a runtime's image (pulled, or found in the cache). Waited for: berth gathers log
 * lines for up to BERTH_LOG_FLUSH (20ms) before writing them, so `berth serve` may print its URL first.
 */
async function imageLog(berth: BerthProcess, runtime: string): Promise<ImageLog> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 25))) {
    for (const line of berth.logs().split('\n')) {
      if (!line.startsWith('{')) continue;
      const l = JSON.parse(line) as Partial<ImageLog> & { runtime?: string };
      if (l.runtime === runtime && l.rootfs && /^image /.test(l.msg ?? '')) return l as ImageLog;
    }
  }
  assert.fail(`berth logged nothing about runtime ${runtime}'s image within 10 s:\n${berth.logs()}`);
}

/** Every path under `dir` with its size, mode and mtime: what a write into the shared root would change. */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of ['.', ...(readdirSync(dir, { recursive: true }) as string[])]) {
    const s = statSync(join(dir, name), { throwIfNoEntry: false });
    out.set(name, s ? `${s.size} ${s.mode} ${s.mtimeMs}` : 'vanished');
  }
  return out;
}

type Connected = Awaited<ReturnType<typeof connect>>;
/**
 * A session whose client answers an elicitation with `name`; `asked` holds the questions it was asked. A failed call
 * names the tool and carries the end of berth's log, so a failure on a loaded machine says where it stopped.
 */
async function session(berth: BerthProcess, url: string, name: string) {
  const c = await connect(url, { elicitation: {} });
  const asked: string[] = [];
  c.client.setRequestHandler(ElicitRequestSchema, async (r) => {
    asked.push(r.params.message);
    return { action: 'accept', content: { name } };
  });
  const call = async (tool: string, args: Record<string, string> = {}) => {
    try {
      // Past the SDK's 60 s default: on a saturated 2-core machine a gVisor call has been seen near it.
      return textOf(await c.client.callTool({ name: tool, arguments: args }, undefined, { timeout: CALL_TIMEOUT_MS }));
    } catch (e) {
      const logs = berth.logs().split('\n').slice(-15).join('\n');
      throw new Error(`${url} ${tool}(${JSON.stringify(args)}) failed: ${(e as Error).message}\nberth's log ends:\n${logs}`, { cause: e });
    }
  };
  return { c, asked, call };
}
async function end(c: Connected): Promise<void> {
  await c.transport.terminateSession().catch(() => undefined);
  await c.client.close();
}

/** Starts berth on `runtimes`, expecting it to refuse them: its exit code and what it wrote. */
function refusedAtStart(
  runtimes: Record<string, Record<string, unknown>>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, ['bin/berth.js', 'serve', '--config', writeConfig(runtimes)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`berth did not exit within ${STARTUP_MS} ms:\n${stdout}\n${stderr}`));
    }, STARTUP_MS);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const DRIVERS = { namespace: namespaceDriver, gvisor: gvisorDriver };
async function driverSkip(driver: keyof typeof DRIVERS): Promise<string | false> {
  if (skipAll) return skipAll;
  const p = await DRIVERS[driver].probe(ROOT);
  if (p.ok) return false;
  console.log(`# SKIP image runtime tests under ${driver}: ${p.reason}`);
  return `${driver} driver unavailable here: ${p.reason}`;
}

for (const driver of ['namespace', 'gvisor'] as const) {
  const skip = await driverSkip(driver);
  describe(`images under isolation ${driver}, network none`, { skip }, () => {
    let b: Awaited<ReturnType<typeof serveRuntimes>>;
    before(async () => {
      const common = { isolation: driver, network: 'none', imageCache: { dir: sharedCache } };
      b = await serveRuntimes({
        http: { ...common, image: images!.http, warmPool: 2 },
        stdio: { ...common, image: images!.stdio, upstream: 'stdio', warmPool: 2 },
        // The same image again, in a runtime of its own: found in the cache the first runtime filled.
        again: { ...common, image: images!.http, warmPool: 0 },
      });
    });
    after(() => b?.berth.stop());

    for (const runtime of ['http', 'stdio'] as const) {
      test(`${runtime} image: the SDK client's session works end to end, elicitation included, with the image's env and workdir`, async () => {
        const s = await session(b.berth, b.url(runtime), `Ada via ${driver}/${runtime}`);
        try {
          assert.deepEqual((await s.c.client.listTools()).tools.map((t) => t.name).sort(), ['elicit', 'read', 'whoami', 'write']);
          assert.equal(await s.call('elicit'), `Ada via ${driver}/${runtime}`, 'the server got the name the client gave');
          assert.deepEqual(s.asked, ['What is your name?']);
          const who = JSON.parse(await s.call('whoami')) as Record<string, unknown>;
          assert.equal(who.mark, 'from-image', 'the image config Env');
          assert.equal(who.cwd, '/app', 'the image config WorkingDir');
          assert.equal(who.path, IMAGE_PATH, "the image's PATH, not the host's");
          // AgentCore's contract: the http image's server is told (and listens on) 8000, its one exposed port.
          assert.equal(who.port, runtime === 'http' ? '8000' : undefined);
        } finally {
          await end(s.c);
        }
      });

      test(`${runtime} image: two sessions do not see each other's writes, and the shared unpacked root is unchanged`, async () => {
        const rootfs = (await imageLog(b.berth, runtime)).rootfs;
        assert.ok(rootfs.startsWith(`${sharedCache}/sha256-`), `the rootfs is in the configured cache: ${rootfs}`);
        const a = await session(b.berth, b.url(runtime), 'A');
        const z = await session(b.berth, b.url(runtime), 'B');
        // Taken once both servers run, so that what starting a sandbox may do is not counted as a session's write.
        const before = tree(rootfs);
        assert.ok(before.has('app/http-server.mjs'), `the unpacked root holds the image's /app: ${rootfs}`);
        try {
          // Relative: lands in the working directory, /app, which is part of the shared image root.
          assert.equal(await a.call('write', { file: 'note-a.txt', text: 'written by A' }), 'ok');
          assert.equal(await a.call('write', { file: '/tmp/tmp-a.txt', text: 'A tmp' }), 'ok');
          assert.equal(await z.call('write', { file: '/app/note-b.txt', text: 'written by B' }), 'ok');
          assert.equal(await a.call('read', { file: '/app/note-a.txt' }), 'written by A', 'A reads its own write');
          assert.equal(await z.call('read', { file: 'note-b.txt' }), 'written by B', 'B reads its own write');
          assert.equal(await z.call('read', { file: '/app/note-a.txt' }), 'missing', "B does not see A's write");
          assert.equal(await z.call('read', { file: '/tmp/tmp-a.txt' }), 'missing', "B does not see A's /tmp");
          assert.equal(await a.call('read', { file: 'note-b.txt' }), 'missing', "A does not see B's write");
        } finally {
          await Promise.all([end(a.c), end(z.c)]);
        }
        for (const f of ['app/note-a.txt', 'app/note-b.txt', 'tmp/tmp-a.txt'])
          assert.equal(existsSync(join(rootfs, f)), false, `${f} reached the shared root`);
        assert.deepEqual(tree(rootfs), before, 'the shared unpacked root is unchanged (names, sizes, modes, mtimes)');
      });

      test(`${runtime} image: nothing in the shared unpacked root was added or changed after it was unpacked`, async () => {
        const rootfs = (await imageLog(b.berth, runtime)).rootfs;
        // berth writes berth-image.json beside the rootfs once umoci has unpacked it, restoring the layer's mtimes.
        const unpackedAt = statSync(join(rootfs, '..', 'berth-image.json')).mtimeMs;
        const later = [...tree(rootfs)].filter(([, v]) => Number(v.split(' ')[2]) > unpackedAt);
        assert.deepEqual(later, [], `changed in the shared root ${rootfs} after it was unpacked`);
      });
    }

    test('a second runtime naming the same image unpacks nothing: it is found in the cache, the same root', async () => {
      const first = await imageLog(b.berth, 'http');
      const again = await imageLog(b.berth, 'again');
      assert.match(again.msg, /found in the cache \(nothing unpacked\)/);
      assert.equal(again.rootfs, first.rootfs);
      assert.equal(again.image, first.image);
      assert.match(first.image, /^oci:.*:http@sha256:[0-9a-f]{64}$/, 'the reference pinned by its digest');
    });

    test('/healthz shows each image pinned by its digest', async () => {
      const health = (await (await fetch(new URL('/healthz', b.url('http')))).json()) as {
        runtimes: Record<string, { image?: string; isolation?: string }>;
      };
      for (const runtime of ['http', 'stdio', 'again'])
        assert.equal(health.runtimes[runtime]!.image, (await imageLog(b.berth, runtime)).image, `${runtime} in /healthz`);
      assert.equal(health.runtimes.http!.isolation, driver);
    });
  });
}

describe('the image cache across berth starts', { skip: skipAll }, () => {
  test('a second berth start naming a cached image unpacks nothing: logged as found, its digest directory untouched', async () => {
    // Filled by the drivers' berths above, or by this test's own first start when both drivers were skipped.
    let first: BerthProcess | undefined;
    if (!existsSync(sharedCache)) {
      first = await startBerth([
        'serve',
        '--config',
        writeConfig({
          img: { image: images!.http, isolation: 'namespace', network: 'none', warmPool: 0, imageCache: { dir: sharedCache } },
        }),
      ]);
      await first.stop();
    }
    const entries = readdirSync(sharedCache).sort();
    const digests = entries.filter((e) => e.startsWith('sha256-'));
    assert.ok(digests.length >= 1, `the cache holds unpacked images: ${entries.join(', ')}`);
    const stats = new Map(digests.map((d) => [d, statSync(join(sharedCache, d))]));
    const berth = await startBerth([
      'serve',
      '--config',
      writeConfig({ img: { image: images!.http, isolation: 'namespace', network: 'none', warmPool: 1, imageCache: { dir: sharedCache } } }),
    ]);
    try {
      const log = await imageLog(berth, 'img');
      assert.match(log.msg, /found in the cache \(nothing unpacked\)/);
      const dir = log.rootfs
        .replace(/\/rootfs$/, '')
        .split('/')
        .pop()!;
      assert.ok(stats.has(dir), `the rootfs ${log.rootfs} is one already in the cache`);
      const now = statSync(join(sharedCache, dir));
      assert.equal(now.ino, stats.get(dir)!.ino, 'the same directory, not a new one renamed into place');
      assert.equal(now.mtimeMs, stats.get(dir)!.mtimeMs, 'nothing written in it');
      const s = await session(berth, new URL('/runtimes/img/mcp', berth.url).href, 'cached');
      try {
        assert.equal(JSON.parse(await s.call('whoami')).mark, 'from-image');
      } finally {
        await end(s.c);
      }
    } finally {
      await berth.stop();
    }
    assert.deepEqual(readdirSync(sharedCache).sort(), entries, 'no directory added to the cache (no unpack, no leftover)');
  });
});

describe('images loaded from saved archives, under isolation namespace', { skip: skipAll || (await driverSkip('namespace')) }, () => {
  test('docker-archive and oci-archive images are pulled, unpacked and serve a session', async () => {
    // A cache of its own: the oci-archive holds the layout's very manifest, so the shared cache would already hold it.
    const cache = join(scratch, 'archives-cache');
    const common = { isolation: 'namespace', network: 'none', warmPool: 1, imageCache: { dir: cache } };
    const b = await serveRuntimes({
      docker: { ...common, image: images!.dockerArchive },
      ociarchive: { ...common, image: images!.ociArchive },
    });
    try {
      for (const [runtime, ref] of [
        ['docker', images!.dockerArchive],
        ['ociarchive', images!.ociArchive],
      ] as const) {
        const log = await imageLog(b.berth, runtime);
        assert.equal(log.msg, 'image pulled and unpacked', runtime);
        assert.equal(log.image.replace(/@sha256:[0-9a-f]{64}$/, ''), ref, `${runtime}: pinned ${log.image}`);
        assert.ok(log.rootfs.startsWith(`${cache}/sha256-`), log.rootfs);
        const s = await session(b.berth, b.url(runtime), `from ${runtime}`);
        try {
          assert.equal(await s.call('elicit'), `from ${runtime}`);
          const who = JSON.parse(await s.call('whoami')) as Record<string, unknown>;
          assert.deepEqual([who.mark, who.cwd, who.path, who.port], ['from-image', '/app', IMAGE_PATH, '8000'], runtime);
        } finally {
          await end(s.c);
        }
      }
      // A docker-archive's manifest is Docker's, not the OCI one: a different digest, a root of its own.
      assert.notEqual((await imageLog(b.berth, 'docker')).rootfs, (await imageLog(b.berth, 'ociarchive')).rootfs);
    } finally {
      await b.berth.stop();
    }
  });
});

describe('images berth cannot run are refused at start, naming the runtime and the reason', { skip: skipAll }, () => {
  /** Each case gets a cache of its own, empty: the corrupted image's manifest is the good one's, cached elsewhere. */
  const refuse = async (image: string, expected: RegExp, extra: Record<string, unknown> = {}) => {
    const cache = join(scratch, `refused-${configs + 1}`);
    mkdirSync(cache);
    const r = await refusedAtStart({ bad: { image, isolation: 'namespace', network: 'none', imageCache: { dir: cache }, ...extra } });
    assert.ok(r.code !== null && r.code !== 0, `berth exited ${r.code}, not with an error:\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /listening on/);
    assert.match(r.stderr, /berth: runtime "bad": /, 'the message names the runtime');
    assert.match(r.stderr, expected);
    return { ...r, cache };
  };
  const noneUnpacked = (cache: string) =>
    assert.deepEqual(readdirSync(cache), [], 'nothing left in the cache: no digest directory, no half-unpacked one');

  test('a missing OCI layout', async () => {
    const missing = join(scratch, 'no-such-layout');
    const r = await refuse(`oci:${missing}:http`, new RegExp(`image "oci:${missing}:http": ${missing} does not exist`));
    noneUnpacked(r.cache);
  });

  test('an unknown tag in an existing layout', async () => {
    const r = await refuse(
      `oci:${images!.layout}:no-such-tag`,
      /image "oci:.*:no-such-tag": cannot read its manifest: .*no descriptor found for reference "no-such-tag"/,
    );
    noneUnpacked(r.cache);
  });

  test('a transport berth does not take (dir:)', async () => {
    const r = await refuse(
      'dir:/x',
      /image "dir:\/x": berth does not read images from dir: \(use docker:\/\/.*oci:DIR\[:TAG\], oci-archive:FILE or docker-archive:FILE\)/,
    );
    noneUnpacked(r.cache);
  });

  test('an image whose layer was corrupted: its digest does not match', async () => {
    const r = await refuse(
      images!.corrupted,
      /image "oci:.*\/corrupted:http": cannot copy it: .*Digest did not match, expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}/,
    );
    noneUnpacked(r.cache);
  });

  test('isolation process: an image needs a root filesystem of its own', async () => {
    await refuse(
      images!.http,
      /isolation process runs servers in the host's own filesystem, and an image needs a root filesystem of its own: use isolation namespace, gvisor or microvm/,
      // The shared cache: the image is (likely) there already, so the refusal need not wait for an unpack.
      { isolation: 'process', imageCache: { dir: sharedCache } },
    );
  });
});
