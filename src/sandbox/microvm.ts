// The microVM driver: each session server in its own QEMU `microvm` with the stock Debian kernel — its own
// kernel, memory and devices. Hardware-accelerated (-accel kvm) when a canary boot shows KVM can run a stock
// kernel; TCG software emulation elsewhere (this is slow: seconds to boot, which the warm pool hides).
// QEMU runs as uid 65534 with its seccomp sandbox on. The guest sees /usr and the /etc files the other drivers
// show read-only, and its working directory read-write over 9p, never /; the runtime directory at its own path
// as an overlay whose lower is the read-only 9p share and whose upper is guest tmpfs, so writes beside the code
// stay in the VM's memory. MCP travels over a virtio-serial port wired to QEMU's stdio, and the guest console
// (the server's stderr) over a unix socket.
// A server from an image (writeImageGuest): the image's unpacked root is the only filesystem shared besides the
// working directory and the mounts — read-only over 9p (QEMU refuses writes whatever the guest does), as the lower
// of an overlay whose upper is guest tmpfs, so the shared root is never written and a session's writes vanish
// with its VM. The guest's /usr share is an empty directory then: nothing of the host's /usr or /etc is shown.
// QEMU opens the root through a read-only nodev,nosuid,noexec bind in the VM's scratch that only uid 65534 may
// enter (the cache itself is root's alone), and its 9p server never follows a symlink out of a share. So what
// uid 65534 may not read on the host (a 0700 /root) cannot be read in the guest either, even by guest root; the
// image's working directory and home, when so, are an empty tmpfs of the image user's instead.
// The server is chrooted into that overlay (busybox nsenter -r) as the image's uid/gid. The guest kernel is the
// boundary, not the chroot: an image that runs as root is root in its own VM (as a command's server is) and can
// leave the chroot, reaching only what the VM already holds — the shares QEMU exposes, read-only but the
// working directory (and a non-root image user may become guest root through the image's own setuid files). For a non-root image user the working directory's share keeps guest owners in host xattrs
// (security_model=mapped-xattr), so the guest can give it to that uid while the host files stay uid 65534's.
// An http upstream's server gets HOST=0.0.0.0: QEMU forwards $PORT to the guest's NIC, not its loopback.
// A node server is bundled into one file first when it can be (microvm-bundle.ts): far fewer files over 9p.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { PassThrough } from 'node:stream';
import { startChild } from './child.js';
import type { ExitInfo, ImageRoot, Sandbox, SandboxDriver, SandboxSpec } from './driver.js';
import { dropPrivileges, ETC_FILES, hostName, isRoot, run, which, privateScratch } from './host.js';
import { findAssets, type MicrovmAssets } from './microvm-assets.js';
import { bundleFor, type Bundle } from './microvm-bundle.js';
import { mountCapped } from './disk.js';
import { closedOnError, openNetwork } from './network.js';
import { resolveArgv } from './process.js';
import { track } from './registry.js';
import { withSandboxUid } from './uids.js';

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

/** The guest's RAM: the configured memory limit, else (unset, or 0 for no limit) 512 MiB; at least 128 MiB. */
const guestMiB = (spec: SandboxSpec) => Math.max(128, Math.round((spec.limits.memory || 512 * 1048576) / 1048576));

/** `imageRoot`: where QEMU opens the image's root (shareImageRoot), for a server from an image. */
function qemuArgs(spec: SandboxSpec, assets: MicrovmAssets, scratch: string, acceleration: 'kvm' | 'tcg', imageRoot?: string): string[] {
  const memMiB = guestMiB(spec);
  const a = ['-M', 'microvm,x-option-roms=off,isa-serial=on,rtc=off'];
  a.push(...(acceleration === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg,tb-size=32', '-cpu', 'max']));
  a.push('-m', `${memMiB}M`, '-smp', String(Math.max(1, Math.ceil(spec.limits.cpus ?? 1))));
  // seccomp with every optional deny: a QEMU taken over by its guest may not exec, fork, change its ids or its
  // scheduling, nor use obsolete syscalls (plain `on` allows all of these).
  a.push('-nodefaults', '-no-user-config', '-nographic', '-no-reboot');
  a.push('-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  a.push('-kernel', assets.kernel, '-initrd', assets.initrd);
  a.push('-append', 'console=ttyS0 quiet loglevel=1 panic=-1 tsc_early_khz=2000000 tsc=reliable lpj=4000000 rdinit=/init');
  a.push('-chardev', `socket,id=con,path=${join(scratch, 'console.sock')}`, '-serial', 'chardev:con');
  a.push('-device', 'virtio-serial-device', '-chardev', 'stdio,id=mcp,signal=off', '-device', 'virtserialport,chardev=mcp,name=mcp');
  const share = (tag: string, path: string, ro: boolean, model = 'none') =>
    a.push(
      '-fsdev',
      `local,id=${tag},path=${path},security_model=${model}${ro ? ',readonly=on' : ''}`,
      '-device',
      `virtio-9p-device,fsdev=${tag},mount_tag=${tag}`,
    );
  share('cfg', join(scratch, 'cfg'), true);
  if (spec.image && imageRoot) {
    // The guest's /init mounts a `usr` share: an empty one, so an image's VM holds nothing of the host's /usr.
    share('usr', join(scratch, 'empty'), true);
    share('img', imageRoot, true);
    share('work', spec.workDir, false, spec.image.uid === 0 ? 'none' : 'mapped-xattr');
  } else {
    share('usr', '/usr', true);
    share('app', spec.cwd, true);
    share('work', spec.workDir, false);
    hostEtc().dirs.forEach((d, i) => share(`e${i}`, d, true));
  }
  spec.mounts.forEach((m, i) => share(`m${i}`, m, true));
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

/** The guest command that mounts a 9p share at `path` (made first), without a newline. */
const mount9p = (tag: string, path: string, ro: boolean) =>
  `$B mkdir -p ${q(path)} && $B mount -t 9p -o trans=virtio,version=9p2000.L${ro ? ',ro' : ''},msize=262144 ${tag} ${q(path)}`;

/** The server's environment as run.sh exports it (/init passes $BERTH_ENV to `env -i` unquoted, which splits values at spaces). */
function exportsOf(spec: SandboxSpec): string {
  const env = spec.port !== undefined ? { HOST: '0.0.0.0', ...spec.env } : spec.env;
  return Object.entries(env)
    .filter(([k]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
    .map(([k, v]) => `export ${k}=${q(v)}\n`)
    .join('');
}

/** What the guest's /init sources: where to mount the shares, the environment, the command. */
function writeGuestConfig(dir: string, spec: SandboxSpec, argv: string[], bundle: Bundle | undefined, resolvConf?: string): void {
  mkdirSync(dir);
  const mount = (tag: string, path: string, ro: boolean) => `${mount9p(tag, path, ro)}\n`;
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
  writeFileSync(join(dir, 'env.sh'), 'BERTH_ENV=\n');
  const exports = exportsOf(spec);
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

/**
 * Where QEMU (uid 65534 under root) opens the image's root. The cache is root's alone (image.ts), so as root the
 * root is bind-mounted read-only, nodev, nosuid, noexec into the VM's scratch, in a directory only uid 65534 may
 * enter: QEMU reaches it, no other host user does, and nothing of it is a device or a program on the host.
 * Undefined when the bind fails; unprivileged, the cache is berth's user's own and QEMU runs as that user.
 */
async function shareImageRoot(image: ImageRoot, scratch: string, uid: number): Promise<string | undefined> {
  if (!isRoot()) return image.rootfs;
  const holder = join(scratch, 'image');
  mkdirSync(join(holder, 'root'), { recursive: true, mode: 0o700 });
  chownSync(holder, uid, uid);
  const r = await run('mount', ['--bind', '-o', 'ro,nodev,nosuid,noexec', image.rootfs, join(holder, 'root')]);
  return r.code === 0 ? join(holder, 'root') : undefined;
}

/** Where the guest assembles an image's root: the overlay of the shared image over the session's tmpfs layer. */
const GUEST_ROOT = '/run/berth-root';

/** The image's working directory and its home when that lies inside the image: the server's own to write. */
function imageOwnDirs(spec: SandboxSpec, image: ImageRoot): string[] {
  const home = spec.env.HOME;
  const inImage = home?.startsWith('/') && home !== spec.workDir && !/^\/(proc|dev|tmp)(\/|$)/.test(home) ? [home] : [];
  // As inside the image: `..` stops at its root.
  return [...new Set([image.cwd, ...inImage].map((d) => posix.resolve('/', d)))];
}

/**
 * The guest side of a server from an image. /init's mounts.sh has nothing to do; run.sh (as guest root, its
 * stdout already the MCP port, so everything it says goes to the console) assembles the root — the image share
 * read-only under a tmpfs upper, /proc, /dev, a fresh /tmp, the working directory share at its host path, the
 * mounts — then chroots into it as the image's user, in the image's working directory, with spec.env. A step that
 * fails ends the VM with the reason on the console (the server's stderr).
 */
function writeImageGuest(dir: string, spec: SandboxSpec, image: ImageRoot): void {
  mkdirSync(dir);
  writeFileSync(join(dir, 'mounts.sh'), '');
  writeFileSync(join(dir, 'env.sh'), 'BERTH_ENV=\n');
  if (guestNic(spec)) writeFileSync(join(dir, 'net'), '');
  const at = (p: string) => q(posix.join(GUEST_ROOT, p));
  const owner = `${image.uid}:${image.gid}`;
  const lines = [
    'B=/bin/busybox',
    'fail() { echo "berth:init $*" >&2; exit 1; }',
    `${mount9p('img', '/run/berth-image', true)} || fail "cannot mount the image's root"`,
    `$B mkdir -p /run/berth-layer ${GUEST_ROOT} && $B mount -t tmpfs -o mode=0755 tmpfs /run/berth-layer && $B mkdir /run/berth-layer/upper /run/berth-layer/work || fail "cannot make the session's layer"`,
    `$B mount -t overlay -o lowerdir=/run/berth-image,upperdir=/run/berth-layer/upper,workdir=/run/berth-layer/work overlay ${GUEST_ROOT} || fail "no overlay over the image's root"`,
    `$B mkdir -p ${at('/proc')} ${at('/dev')} ${at('/tmp')} && $B mount -t proc proc ${at('/proc')} && $B mount -t devtmpfs dev ${at('/dev')} || fail "cannot mount /proc and /dev"`,
    `$B mkdir -p ${at('/dev/shm')} && $B mount -t tmpfs -o mode=1777 shm ${at('/dev/shm')} && $B mount -t tmpfs -o mode=1777 tmp ${at('/tmp')} || fail "cannot mount /tmp"`,
    // After /tmp: a working directory under the host's /tmp lies in the guest's fresh one.
    `${mount9p('work', posix.join(GUEST_ROOT, spec.workDir), false)} || fail "cannot mount the working directory"`,
    // Guest root needs no ownership; another uid gets it through the share's mapped-xattr (see qemuArgs).
    ...(image.uid === 0
      ? []
      : [
          `$B chown ${owner} ${at(spec.workDir)} || fail "cannot give the working directory to uid ${image.uid} (its host filesystem needs user xattrs)"`,
        ]),
    ...spec.mounts.map((m, i) => `${mount9p(`m${i}`, posix.join(GUEST_ROOT, m), true)} || fail ${q(`cannot mount ${m}`)}`),
    // Copied up into the session's layer, so the server may write its working directory and home as in the image;
    // only through real directories: guest root never follows the image's symlinks to hand something else over.
    `own() { d=${GUEST_ROOT}; IFS=/; set -- $1; unset IFS; for c; do [ -n "$c" ] || continue; d=$d/$c; ` +
      `if [ -L "$d" ]; then echo "berth:init $d is a symlink: not given to uid ${image.uid}" >&2; return 0; fi; done; ` +
      // QEMU reads the image as uid 65534: a directory private to another host owner (/root, 0700) cannot be read
      // through the share even by guest root, so the server gets an empty one of its own there, not EACCES.
      `if [ -d "$d" ] && ! $B ls -a "$d" >/dev/null 2>&1; then echo "berth:init $d is not readable through the VM's share: an empty tmpfs instead" >&2; ` +
      `$B mount -t tmpfs -o mode=0700,uid=${image.uid},gid=${image.gid} tmpfs "$d"; return; fi; ` +
      `$B mkdir -p "$d" && $B chown ${owner} "$d"; }`,
    ...imageOwnDirs(spec, image).map((d) => `own ${q(d)} || fail ${q(`cannot give ${d} to uid ${image.uid}`)}`),
  ];
  // /init wrote QEMU's resolver to the guest's /etc; an image with an /etc of its own gets it too (never through a symlink of its).
  if (spec.network !== 'none')
    lines.push(`if [ -d ${at('/etc')} ]; then $B rm -f ${at('/etc/resolv.conf')}; $B cp /etc/resolv.conf ${at('/etc/resolv.conf')}; fi`);
  // Inside the chroot, still guest root, with busybox reached through /init's root (/proc/1/root): the working
  // directory and a bare argv[0] are resolved there, so the image's own symlinks and `..` mean what they mean in
  // it; argv[0] becomes a path, or busybox would run an applet of that name (sh, env) instead of the image's.
  // nsenter -S/-G then drops to the image's uid/gid (no supplementary groups; a non-root uid keeps no capabilities).
  const entry = [
    'cd "$1" || { echo "berth:init cannot enter the working directory $1" >&2; exit 1; }',
    'u=$2; g=$3; shift 3; p=$1',
    'case $p in */*) ;; *) p=; IFS=:; for d in $PATH; do if [ -f "${d:-.}/$1" ] && [ -x "${d:-.}/$1" ]; then p=${d:-.}/$1; break; fi; done; unset IFS;; esac',
    '[ -n "$p" ] || { echo "berth:init $1: not found on the image\'s PATH" >&2; exit 127; }',
    'shift; exec /proc/1/root/bin/busybox nsenter -F -S "$u" -G "$g" -- "$p" "$@"',
  ].join('\n');
  const chroot = ['$B', 'chroot', GUEST_ROOT, '/proc/1/root/bin/busybox', 'sh', '-c', q(entry), 'berth-entry'];
  const args = [image.cwd, String(image.uid), String(image.gid), ...spec.argv].map(q);
  writeFileSync(join(dir, 'run.sh'), `${lines.join('\n')}\n${exportsOf(spec)}exec ${chroot.join(' ')} ${args.join(' ')}\n`);
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
    // As root QEMU runs as a host uid of its own (uids.ts), given back once it is gone.
    return withSandboxUid((uid, release) => startVm(spec, uid, release));
  },
};

async function startVm(spec: SandboxSpec, uid: number, releaseUid: () => void): Promise<Sandbox> {
  const assets = findAssets();
  if (!assets) throw new Error('no microVM kernel/initramfs: run `berth setup microvm`');
  const acceleration = await chooseAccel(assets);
  const scratch = await mkdtemp(join(tmpdir(), 'berth-vm-'));
  // QEMU (the sandbox uid, as root) reads its config and connects to the console here; no other host user may:
  // the config holds the server's environment, and the console is the server's stdin and stdout.
  privateScratch(scratch, uid);
  // First, so that nothing else is open yet should it fail.
  let imageRoot: string | undefined;
  if (spec.image) {
    // Recorded before the bind, so a berth killed meanwhile leaves nothing mounted; startChild's record replaces it.
    const record = track(hostName(spec.sessionId), {
      driver: 'microvm',
      mounts: [join(scratch, 'image/root')],
      dirs: [scratch, spec.workDir],
    });
    imageRoot = await shareImageRoot(spec.image, scratch, uid);
    if (!imageRoot) {
      record.drop();
      await rm(scratch, { recursive: true, force: true });
      throw new Error(`cannot share the image's root ${spec.image.rootfs} with the microVM (bind mount failed)`);
    }
  }
  // QEMU runs in the session's network (its user-mode NAT connects out from there), unless it needs none at all.
  const net = guestNic(spec) ? await openNetwork({ mode: spec.network, allow: spec.allowNet ?? [], sessionId: spec.sessionId }) : undefined;
  const capped = await closedOnError(net, async () => {
    // QEMU's DNS forwarder (10.0.2.3) answers the guest; egress: it asks slirp4netns's, at the same address.
    if (spec.image) {
      mkdirSync(join(scratch, 'empty'));
      writeImageGuest(join(scratch, 'cfg'), spec, spec.image);
    } else {
      const argv = resolveArgv(spec.argv, spec.cwd);
      writeGuestConfig(join(scratch, 'cfg'), spec, argv, await bundleFor(argv, spec.cwd), net?.resolvConf);
    }
    // The 9p-shared working directory is the only host storage a VM writes to; its tmpfs and overlay live in its memory.
    const capped = spec.limits.disk ? await mountCapped(spec.workDir, spec.limits.disk, uid, 0o700, spec.notice) : undefined;
    if (isRoot()) chownSync(spec.workDir, uid, uid);
    return capped;
  });
  // The guest console arrives on a unix socket QEMU connects to; it is the server's stderr.
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  const consoleServer = createServer((c) => {
    let buf = '';
    let opened = false;
    let tail = ''; // the console's last bytes: under TCG it may arrive a byte at a time
    c.on('data', (d: Buffer) => {
      if (!opened) {
        buf += d.toString('utf8');
        // Only once the guest holds the port open may MCP bytes flow; earlier ones would be lost.
        if (buf.includes('berth:port-open')) {
          opened = true;
          stdin.pipe(sandbox.stdin);
        }
      }
      tail = (tail + d.toString('latin1')).slice(-256);
      if (tail.includes('berth:oom')) oom = true;
      // The last report counts: /init writes it after the server (which shares the console) has exited.
      for (const m of tail.matchAll(/berth:exit (\d+)\r?\n/g)) guestStatus = Number(m[1]);
      stderr.write(d);
    });
    c.on('end', () => stderr.end());
  });
  let oom = false;
  /** The server's exit status as /init reports it: QEMU itself exits 0 when the guest powers off. */
  let guestStatus: number | undefined;
  const sock = join(scratch, 'console.sock');
  // One connection, QEMU's: another (an escaped sandbox of the same uid) could inject MCP bytes or fake an exit.
  consoleServer.maxConnections = 1;
  await new Promise<void>((resolve) => consoleServer.listen(sock, resolve));
  chmodSync(sock, 0o600);
  if (isRoot()) chownSync(sock, uid, uid);
  // The image's root as bind-mounted into the scratch (as root), which the cleanup detaches.
  const bound = imageRoot !== spec.image?.rootfs ? imageRoot : undefined;
  const drop = dropPrivileges(uid);
  const full = [...drop, which('qemu-system-x86_64')!, ...qemuArgs(spec, assets, scratch, acceleration, imageRoot)];
  const sandbox = await startChild({
    driver: 'microvm',
    file: full[0]!,
    args: full.slice(1),
    cwd: scratch,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    spec,
    net,
    scratchDirs: [scratch],
    scratchMounts: [...(capped ? [capped.dir] : []), ...(bound ? [bound] : [])],
    cleanup: async () => {
      try {
        consoleServer.close();
        await capped?.release();
        // Detached before the scratch is removed: rm must never walk into the image's root.
        if (bound) await run('umount', ['-l', bound]);
        await rm(scratch, { recursive: true, force: true });
      } finally {
        releaseUid(); // QEMU is gone: startChild removed its cgroup first
      }
    },
  });
  sandbox.stderr.pipe(stderr, { end: false }); // QEMU's own complaints
  // QEMU exits normally after a guest OOM kill: only the guest's report on the console says why.
  const verdict = (info: ExitInfo): ExitInfo => {
    const code = info.code === 0 && guestStatus !== undefined ? guestStatus : info.code;
    return { ...info, code, ...(oom ? { reason: 'oom', memoryLimit: guestMiB(spec) * 1048576 } : {}) };
  };
  return {
    driver: 'microvm',
    pid: sandbox.pid,
    dialHttp: sandbox.dialHttp,
    stdin,
    stdout: sandbox.stdout,
    stderr,
    exited: sandbox.exited.then(verdict),
    started: () => sandbox.started(),
    stop: async (grace) => {
      stdin.end(); // the server sees EOF and exits; /init powers the VM off
      return verdict(await sandbox.stop(grace));
    },
  };
}
