// The microVM driver: each session server in its own QEMU `microvm` with the stock Debian kernel — its own
// kernel, memory and devices. Hardware-accelerated (-accel kvm) when a canary boot shows KVM can run a stock
// kernel; TCG software emulation elsewhere (this is slow: seconds to boot, which the warm pool hides).
// QEMU runs as uid 65534 with its seccomp sandbox on. The guest sees /usr and the /etc files the other drivers
// show read-only, and its working directory read-write over 9p, never /; the runtime directory at its own path
// as an overlay whose lower is the read-only 9p share and whose upper is guest tmpfs, so writes beside the code
// stay in the VM's memory. MCP travels over a virtio-serial port wired to QEMU's stdio, and the guest console
// (the server's stderr) over a unix socket.
// An http upstream's server gets HOST=0.0.0.0: QEMU forwards $PORT to the guest's NIC, not its loopback.
// A node server is bundled into one file first when it can be (microvm-bundle.ts): far fewer files over 9p.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { startChild } from './child.js';
import type { ExitInfo, Sandbox, SandboxDriver, SandboxSpec } from './driver.js';
import { dropPrivileges, ETC_FILES, isRoot, SANDBOX_UID, which } from './host.js';
import { findAssets, type MicrovmAssets } from './microvm-assets.js';
import { bundleFor, type Bundle } from './microvm-bundle.js';
import { mountCapped } from './disk.js';
import { openNetwork } from './network.js';
import { resolveArgv } from './process.js';

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
let accel: 'kvm' | 'tcg' | undefined;

/** KVM only if a stock kernel really boots on it (a PVM /dev/kvm, for one, cannot): a 3 s canary. */
async function chooseAccel(assets: MicrovmAssets): Promise<'kvm' | 'tcg'> {
  if (accel) return accel;
  if (!existsSync('/dev/kvm')) return (accel = 'tcg');
  const r = spawnSync(
    which('qemu-system-x86_64')!,
    [
      '-M',
      'microvm',
      '-accel',
      'kvm',
      '-cpu',
      'host',
      '-m',
      '128M',
      '-nodefaults',
      '-no-user-config',
      '-nographic',
      '-no-reboot',
      '-kernel',
      assets.kernel,
      '-append',
      'console=ttyS0 panic=-1 rdinit=/nonexistent',
      '-serial',
      'stdio',
    ],
    { timeout: 3000, encoding: 'utf8' },
  );
  return (accel = /Kernel panic|VFS|Run \/nonexistent/.test(r.stdout ?? '') ? 'kvm' : 'tcg');
}

/** The /etc entries the other drivers show, sorted by how they reach the guest: 9p share, copy, or symlink. */
function hostEtc(): { dirs: string[]; files: string[]; links: Array<[string, string]> } {
  const out = { dirs: [] as string[], files: [] as string[], links: [] as Array<[string, string]> };
  for (const f of ETC_FILES) {
    const st = lstatSync(f, { throwIfNoEntry: false });
    if (st?.isDirectory()) out.dirs.push(f);
    else if (st?.isFile()) out.files.push(f);
    else if (st?.isSymbolicLink()) out.links.push([f, readlinkSync(f)]);
  }
  return out;
}

function qemuArgs(spec: SandboxSpec, assets: MicrovmAssets, scratch: string, acceleration: 'kvm' | 'tcg'): string[] {
  const memMiB = Math.max(128, Math.round((spec.limits.memory ?? 512 * 1048576) / 1048576));
  const a = ['-M', 'microvm,x-option-roms=off,isa-serial=on,rtc=off'];
  a.push(...(acceleration === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,tb-size=32', '-cpu', 'max']));
  a.push('-m', `${memMiB}M`, '-smp', String(Math.max(1, Math.ceil(spec.limits.cpus ?? 1))));
  a.push('-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-sandbox', 'on');
  a.push('-kernel', assets.kernel, '-initrd', assets.initrd);
  a.push('-append', 'console=ttyS0 quiet loglevel=1 panic=-1 tsc_early_khz=2000000 tsc=reliable lpj=4000000 rdinit=/init');
  a.push('-chardev', `socket,id=con,path=${join(scratch, 'console.sock')}`, '-serial', 'chardev:con');
  a.push('-device', 'virtio-serial-device', '-chardev', 'stdio,id=mcp,signal=off', '-device', 'virtserialport,chardev=mcp,name=mcp');
  const share = (tag: string, path: string, ro: boolean) =>
    a.push(
      '-fsdev',
      `local,id=${tag},path=${path},security_model=none${ro ? ',readonly=on' : ''}`,
      '-device',
      `virtio-9p-device,fsdev=${tag},mount_tag=${tag}`,
    );
  share('usr', '/usr', true);
  share('cfg', join(scratch, 'cfg'), true);
  share('app', spec.cwd, true);
  share('work', spec.workDir, false);
  spec.mounts.forEach((m, i) => share(`m${i}`, m, true));
  hostEtc().dirs.forEach((d, i) => share(`e${i}`, d, true));
  if (guestNic(spec)) {
    // User-mode NAT: outbound access as QEMU has it (in the session's network namespace unless network: host);
    // none keeps only the forward of an http upstream's $PORT (restrict=on: the guest reaches nothing).
    const fwd = spec.port !== undefined ? `,hostfwd=tcp:127.0.0.1:${spec.port}-:${spec.port}` : '';
    a.push('-netdev', `user,id=n0${spec.network === 'none' ? ',restrict=on' : ''}${fwd}`, '-device', 'virtio-net-device,netdev=n0');
  }
  return a;
}

/** Whether the guest gets a NIC: for any network but none, and for an http upstream's $PORT. */
const guestNic = (spec: SandboxSpec) => spec.network !== 'none' || spec.port !== undefined;

/** What the guest's /init sources: where to mount the shares, the environment, the command. */
function writeGuestConfig(dir: string, spec: SandboxSpec, argv: string[], bundle: Bundle | undefined, resolvConf?: string): void {
  mkdirSync(dir);
  const mount = (tag: string, path: string, ro: boolean) =>
    `$B mkdir -p ${q(path)} && $B mount -t 9p -o trans=virtio,version=9p2000.L${ro ? ',ro' : ''},msize=262144 ${tag} ${q(path)}\n`;
  // The runtime dir: 9p lower, tmpfs upper (the VM's memory). Without overlay support it stays read-only.
  const app =
    mount('app', '/run/berth-app', true) +
    `$B mkdir -p /run/berth-app-rw ${q(spec.cwd)} && $B mount -t tmpfs -o mode=0755 tmpfs /run/berth-app-rw && $B mkdir /run/berth-app-rw/upper /run/berth-app-rw/work\n` +
    `$B mount -t overlay -o lowerdir=/run/berth-app,upperdir=/run/berth-app-rw/upper,workdir=/run/berth-app-rw/work overlay ${q(spec.cwd)} || ` +
    `{ echo "berth:init no overlay: the runtime directory is read-only"; $B mount -o bind /run/berth-app ${q(spec.cwd)}; }\n`;
  // /etc: small files copied in, symlinks (localtime, into /usr) recreated, directories (certificates) shared.
  const etc = hostEtc();
  mkdirSync(join(dir, 'etc'));
  for (const f of etc.files) copyFileSync(f === '/etc/resolv.conf' && resolvConf ? resolvConf : f, join(dir, 'etc', basename(f)));
  const etcSetup =
    `$B mkdir -p /etc && $B cp /cfg/etc/* /etc/ 2>/dev/null\n` +
    etc.links.map(([f, target]) => `$B ln -sf ${q(target)} ${q(f)}\n`).join('') +
    etc.dirs.map((d, i) => mount(`e${i}`, d, true)).join('');
  writeFileSync(
    join(dir, 'mounts.sh'),
    app + mount('work', spec.workDir, false) + spec.mounts.map((m, i) => mount(`m${i}`, m, true)).join('') + etcSetup,
  );
  const env = spec.port !== undefined ? { HOST: '0.0.0.0', ...spec.env } : spec.env;
  // /init passes $BERTH_ENV unquoted to `env -i`, which splits values at spaces: run.sh exports them instead.
  writeFileSync(join(dir, 'env.sh'), 'BERTH_ENV=\n');
  const exports = Object.entries(env)
    .filter(([k]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
    .map(([k, v]) => `export ${k}=${q(v)}\n`)
    .join('');
  if (guestNic(spec)) writeFileSync(join(dir, 'net'), '');
  let run = `exec ${argv.map(q).join(' ')}`;
  if (bundle) {
    // Beside the script (in the overlay), so paths relative to it still hold; if it cannot go there, unbundled.
    writeFileSync(join(dir, 'server.mjs'), bundle.code);
    const beside = join(dirname(bundle.script), `.berth-bundle-${basename(bundle.script).replace(/\.m?js$/, '')}.mjs`);
    run = `/bin/busybox cp /cfg/server.mjs ${q(beside)} 2>/dev/null && exec ${[argv[0]!, beside, ...argv.slice(2)].map(q).join(' ')}\n${run}`;
  }
  writeFileSync(join(dir, 'run.sh'), `${exports}cd ${q(spec.workDir)} || exit 1\n${run}\n`);
}

export const microvmDriver: SandboxDriver = {
  name: 'microvm',

  async probe() {
    if (process.platform !== 'linux') return { ok: false, reason: 'the microVM driver needs Linux' };
    if (!which('qemu-system-x86_64')) return { ok: false, reason: 'qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)' };
    const assets = findAssets();
    if (!assets) return { ok: false, reason: 'no guest kernel and initramfs for this berth version yet: run `berth setup microvm`' };
    const a = await chooseAccel(assets);
    return {
      ok: true,
      reason: a === 'tcg' ? 'no usable hardware virtualisation: TCG software emulation (slow boots; the warm pool hides them)' : undefined,
    };
  },

  async start(spec): Promise<Sandbox> {
    const assets = findAssets();
    if (!assets) throw new Error('no microVM kernel/initramfs: run `berth setup microvm`');
    const acceleration = await chooseAccel(assets);
    const scratch = await mkdtemp(join(tmpdir(), 'berth-vm-'));
    chmodSync(scratch, 0o711);
    const argv = resolveArgv(spec.argv, spec.cwd);
    // QEMU runs in the session's network (its user-mode NAT connects out from there), unless it needs none at all.
    const net = guestNic(spec)
      ? await openNetwork({ mode: spec.network, allow: spec.allowNet ?? [], sessionId: spec.sessionId })
      : undefined;
    // QEMU's DNS forwarder (10.0.2.3) answers the guest; egress: it asks slirp4netns's, at the same address.
    writeGuestConfig(join(scratch, 'cfg'), spec, argv, await bundleFor(argv, spec.cwd), net?.resolvConf);
    // The 9p-shared working directory is the only host storage a VM writes to; its tmpfs and overlay live in its memory.
    const capped = spec.limits.disk ? await mountCapped(spec.workDir, spec.limits.disk, SANDBOX_UID, 0o700, spec.notice) : undefined;
    if (isRoot()) chownSync(spec.workDir, SANDBOX_UID, SANDBOX_UID);
    // The guest console arrives on a unix socket QEMU connects to; it is the server's stderr.
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    const consoleServer = createServer((c) => {
      let buf = '';
      let opened = false;
      c.on('data', (d: Buffer) => {
        if (!opened) {
          buf += d.toString('utf8');
          // Only once the guest holds the port open may MCP bytes flow; earlier ones would be lost.
          if (buf.includes('berth:port-open')) {
            opened = true;
            stdin.pipe(sandbox.stdin);
          }
        }
        if (d.includes('berth:oom')) oom = true;
        stderr.write(d);
      });
      c.on('end', () => stderr.end());
    });
    let oom = false;
    const sock = join(scratch, 'console.sock');
    await new Promise<void>((resolve) => consoleServer.listen(sock, resolve));
    chmodSync(sock, 0o777);
    const drop = dropPrivileges();
    const full = [...drop, which('qemu-system-x86_64')!, ...qemuArgs(spec, assets, scratch, acceleration)];
    const sandbox = await startChild({
      driver: 'microvm',
      file: full[0]!,
      args: full.slice(1),
      cwd: scratch,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      spec,
      net,
      scratchDirs: [scratch],
      scratchMounts: capped ? [capped.dir] : [],
      cleanup: async () => {
        consoleServer.close();
        capped?.release();
        await rm(scratch, { recursive: true, force: true });
      },
    });
    sandbox.stderr.pipe(stderr, { end: false }); // QEMU's own complaints
    // QEMU exits normally after a guest OOM kill: only the guest's report on the console says why.
    const verdict = (info: ExitInfo): ExitInfo => (oom ? { ...info, reason: 'oom' } : info);
    return {
      driver: 'microvm',
      pid: sandbox.pid,
      httpSocket: sandbox.httpSocket,
      stdin,
      stdout: sandbox.stdout,
      stderr,
      exited: sandbox.exited.then(verdict),
      stop: async (grace) => {
        stdin.end(); // the server sees EOF and exits; /init powers the VM off
        return verdict(await sandbox.stop(grace));
      },
    };
  },
};
