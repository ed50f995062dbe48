// Servers from the fixture images (issue 18) in microVMs: real berth (`berth serve`, isolation microvm, network
// none), the official SDK client. One berth per upstream, its warm pool booted before the tests: under TCG
// emulation a VM and its node server take 10-30 s to come up. The http image runs as root; the stdio one is given
// the image's user app (uid 1000) here, so both ways the guest hands out its working directories are exercised.
// Skipped, saying why, where no microVM can run or the image tools are missing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { microvmDriver } from '../src/sandbox/microvm.ts';
import { buildTestImages, ImageToolsMissing, type TestImages } from './fixtures/images/build.ts';
import { ensureMicrovmAssets, warm } from './fixtures/slow-boot.ts';
import { connect, ROOT, serveBerth, textOf, type BerthProcess } from './helpers/berth.ts';

type Session = Awaited<ReturnType<typeof connect>>;
const run = promisify(execFile);

/** Why no microVM can run an image here, or false; the images when it can. */
async function availability(): Promise<{ skip: string | false; images?: TestImages }> {
  ensureMicrovmAssets();
  const p = await microvmDriver.probe(ROOT);
  if (!p.ok) return { skip: `microvm driver unavailable here: ${p.reason}` };
  try {
    return { skip: false, images: await buildTestImages() };
  } catch (e) {
    if (e instanceof ImageToolsMissing) return { skip: e.message };
    throw e;
  }
}

const { skip, images } = await availability();
if (skip) console.log(`SKIP image microvm tests: ${skip}`);
// An http upstream with network none still needs a network namespace of berth's for QEMU's forward of $PORT.
const httpSkip = skip || (process.getuid?.() === 0 ? false : 'an http upstream with network none needs berth as root');
if (httpSkip && !skip) console.log(`SKIP image microvm http tests: ${httpSkip}`);

/** The stdio image with its config's user set to app (1000:1000, home /home/app): a copy in `dir`. */
async function asUserApp(ref: string, dir: string): Promise<string> {
  await run('skopeo', ['--insecure-policy', 'copy', '--quiet', ref, `oci:${dir}:app`]);
  await run('umoci', ['config', '--image', `${dir}:app`, '--config.user', 'app']);
  return `oci:${dir}:app`;
}

/** A session whose client answers every elicitation with the name Ada. */
async function session(url: string): Promise<Session> {
  const s = await connect(url, { elicitation: {} });
  s.client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: 'Ada' } }));
  return s;
}

const call = async (s: Session, name: string, args: Record<string, unknown> = {}) =>
  textOf(await s.client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 }));

/** The session's working directory as the server sees it: the one 9p mount inside its root (the host's path). */
async function workDirOf(s: Session): Promise<string> {
  const line = (await call(s, 'read', { file: '/proc/self/mountinfo' })).split('\n').find((l) => / - 9p work /.test(l));
  assert.ok(line, 'the working directory is a 9p share in the guest');
  return line.split(' ')[4]!;
}

async function end(...sessions: Session[]): Promise<void> {
  for (const s of sessions) await s.transport.terminateSession();
  await Promise.all(sessions.map((s) => s.client.close()));
}

const CASES = [
  { upstream: 'http', user: { uid: 0, home: '/root' }, skip: httpSkip },
  { upstream: 'stdio', user: { uid: 1000, home: '/home/app' }, skip },
] as const;

for (const { upstream, user, skip } of CASES) {
  describe(`an image's server in a microVM (${upstream} upstream, uid ${user.uid})`, { skip }, () => {
    let berth: BerthProcess;
    let scratch: string;
    let cache: string;
    /** The first test's session, kept for the second: each berth then needs only its two warm VMs (a cold one takes a minute). */
    let first: Session | undefined;
    before(async () => {
      scratch = mkdtempSync(join(tmpdir(), 'berth-vm-images-'));
      cache = join(scratch, 'cache');
      const image = upstream === 'http' ? images!.http : await asUserApp(images!.stdio, join(scratch, 'layout'));
      const started = Date.now();
      berth = await serveBerth({
        image,
        ...(upstream === 'stdio' ? { upstream: 'stdio' } : {}),
        isolation: 'microvm',
        network: 'none',
        imageCache: { dir: cache },
        limits: { startupTimeout: '240s' },
        warmPool: 2,
      });
      await warm(berth.url, 2, 300_000);
      console.log(`${upstream}: two warm microVMs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    });
    after(async () => {
      await berth?.stop();
      // As root each VM sees the image's root through a bind mount of its own: none may outlive berth's sessions.
      const bound = () =>
        readFileSync('/proc/self/mountinfo', 'utf8')
          .split('\n')
          .filter((l) => cache && l.includes(`${cache}/`));
      for (const end = Date.now() + 15_000; bound().length > 0 && Date.now() < end;) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(bound(), [], "the image root's bind mounts are detached");
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    });

    test('a session works end to end, elicitation included, in the image with its env, working directory and user', async () => {
      const s = await session(berth.url);
      assert.equal(await call(s, 'elicit'), 'Ada');
      const who = JSON.parse(await call(s, 'whoami')) as Record<string, unknown>;
      assert.equal(who.mark, 'from-image', "the image's environment");
      assert.equal(who.cwd, '/app', "the image's working directory");
      assert.equal(who.uid, user.uid, "the image's user");
      assert.equal(who.home, user.home);
      assert.equal(who.path, '/usr/local/bin:/usr/bin:/bin', "the image's PATH");
      if (upstream === 'http') assert.equal(who.port, '8000', "the image's exposed port, forwarded into the VM");
      first = s;
    });

    test("two sessions do not see each other's writes, and the shared root is never written", async () => {
      const [a, b] = [first ?? (await session(berth.url)), await session(berth.url)];
      const work = await workDirOf(a);
      // Its working directory (relative: the image's /app), /tmp, its home and the session's own directory.
      const files = ['note.txt', '/tmp/note.txt', `${user.home}/note.txt`, `${work}/note.txt`];
      for (const f of files) assert.equal(await call(a, 'write', { file: f, text: `a:${f}` }), 'ok', f);
      for (const f of files) assert.equal(await call(a, 'read', { file: f }), `a:${f}`, f);
      for (const f of files) assert.equal(await call(b, 'read', { file: f }), 'missing', `${f} is not in the other session`);
      assert.equal(await call(b, 'write', { file: 'note.txt', text: 'b' }), 'ok');
      assert.equal(await call(a, 'read', { file: 'note.txt' }), 'a:note.txt');
      // The image's own files: the layer takes root's writes, and a non-root user may not write them at all.
      const usr = await call(a, 'write', { file: '/usr/bin/note.txt', text: 'a' });
      if (user.uid === 0) assert.equal(usr, 'ok');
      else assert.match(usr, /EACCES/);
      const [digest] = readdirSync(cache).filter((d) => d.startsWith('sha256-'));
      assert.ok(digest, 'the image was unpacked into the configured cache');
      for (const f of ['app/note.txt', 'tmp/note.txt', `${user.home.slice(1)}/note.txt`, 'usr/bin/note.txt'])
        assert.equal(existsSync(join(cache, digest, 'rootfs', f)), false, `${f} stays out of the shared root`);
      // The working directory is the one host share a VM writes: there, as QEMU's unprivileged uid, never root.
      assert.equal(readFileSync(`${work}/note.txt`, 'utf8'), `a:${work}/note.txt`);
      assert.notEqual(statSync(`${work}/note.txt`).uid, 0);
      await end(a, b);
    });
  });
}
