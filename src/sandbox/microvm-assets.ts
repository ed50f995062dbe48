// The microVM's kernel and initramfs, built once into a cache directory from Debian's own packages:
// the stock kernel (apt-get download, unpacked, decompressed to vmlinux so TCG skips the in-guest
// decompression) and a busybox initramfs with the virtio/9p/overlay modules and berth's /init.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isRoot } from './host.js';

export const GUEST_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_mmio',
  'virtio_console',
  '9pnet',
  '9pnet_virtio',
  'netfs',
  'fscache',
  '9p',
  'failover',
  'net_failover',
  'virtio_net',
  'overlay',
];

export function assetDir(): string {
  return process.env.BERTH_CACHE_DIR
    ? join(process.env.BERTH_CACHE_DIR, 'microvm')
    : isRoot()
      ? '/var/cache/berth/microvm'
      : join(homedir(), '.cache/berth/microvm');
}

export interface MicrovmAssets {
  kernel: string;
  initrd: string;
}

/** The initramfs is named after what goes into it, so an older build (other modules, another /init) is not used. */
const initrdName = () => `initramfs-${createHash('sha256').update(INIT).update(GUEST_MODULES.join()).digest('hex').slice(0, 12)}.cpio.gz`;

export function findAssets(): MicrovmAssets | undefined {
  const dir = assetDir();
  const kernel = join(dir, 'vmlinux');
  const initrd = join(dir, initrdName());
  return existsSync(kernel) && existsSync(initrd) ? { kernel, initrd } : undefined;
}

/** The guest's PID 1: mounts the shares, finds the MCP port, runs the server on it, reports how it ended. */
const INIT = `#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev /usr /tmp /cfg /run
$B mount -t proc proc /proc; $B mount -t sysfs sys /sys; $B mount -t devtmpfs dev /dev
for m in ${GUEST_MODULES.join(' ')}; do $B insmod /modules/$m.ko || echo "berth:init cannot load $m"; done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro cfg /cfg
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 usr /usr || echo "berth:init cannot mount /usr"
$B ln -s usr/lib /lib; $B ln -s usr/lib64 /lib64
$B mount -t tmpfs tmpfs /tmp
. /cfg/mounts.sh
$B ip link set lo up
# network host: QEMU's user-mode NAT (10.0.2.0/24; 10.0.2.2 is the host, 10.0.2.3 its DNS).
if [ -e /cfg/net ]; then
  $B ip link set eth0 up && $B ip addr add 10.0.2.15/24 dev eth0 && $B ip route add default via 10.0.2.2
  $B mkdir -p /etc && echo "nameserver 10.0.2.3" > /etc/resolv.conf
fi
PORT=
for p in /sys/class/virtio-ports/*; do [ "$($B cat $p/name)" = mcp ] && PORT=/dev/\${p##*/}; done
[ -n "$PORT" ] || echo "berth:init no mcp port"
. /cfg/env.sh
# Open the port once, read-write (a second open is EBUSY); only then may the host send: earlier bytes are lost.
exec 3<>$PORT
echo "berth:port-open" > /dev/console
$B env -i PATH=/usr/bin:/bin $BERTH_ENV /bin/busybox sh /cfg/run.sh 0<&3 1>&3 2>/dev/console
status=$?
$B dmesg | $B grep -q -e "Out of memory" -e "oom-kill" && echo "berth:oom" > /dev/console
echo "berth:exit $status" > /dev/console
$B poweroff -f
`;

function sh(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer } = {}): Buffer {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr?.toString().trim()}`);
  return r.stdout;
}

/** Builds the assets (needs apt-get, dpkg-deb, cpio and busybox-static); returns where they are. */
export function buildAssets(log: (msg: string) => void = () => undefined): MicrovmAssets {
  const dir = assetDir();
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'berth-vm-build-'));
  try {
    const pkg = /Depends: (linux-image-\d\S*)/.exec(sh('apt-cache', ['depends', 'linux-image-amd64']).toString())?.[1];
    if (!pkg) throw new Error('cannot find the Debian kernel package (apt-cache depends linux-image-amd64)');
    log(`downloading ${pkg}`);
    chmodSync(work, 0o777); // apt's sandbox user writes the download here
    sh('apt-get', ['download', pkg], { cwd: work });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'))!;
    sh('dpkg-deb', ['-x', deb, 'kx'], { cwd: work });
    const boot = join(work, 'kx/boot');
    const vmlinuz = join(
      boot,
      readdirSync(boot).find((f) => f.startsWith('vmlinuz'))!,
    );
    // bzImage = setup code + an xz stream: boot the decompressed kernel instead (seconds faster under TCG).
    const image = readFileSync(vmlinuz);
    const at = image.indexOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
    let kernel = vmlinuz;
    if (at >= 0) {
      const r = spawnSync('xz', ['-dc', '--single-stream'], { input: image.subarray(at), maxBuffer: 1 << 30 });
      if (r.stdout?.length > 1_000_000) {
        kernel = join(work, 'vmlinux');
        writeFileSync(kernel, r.stdout);
      }
    }
    copyFileSync(kernel, join(dir, 'vmlinux.tmp'));
    // initramfs
    const root = join(work, 'initramfs');
    for (const d of ['bin', 'modules', 'etc']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
    const modRoot = join(work, 'kx/lib/modules', readdirSync(join(work, 'kx/lib/modules'))[0]!);
    const all = sh('find', [modRoot, '-name', '*.ko*']).toString().trim().split('\n');
    for (const m of GUEST_MODULES) {
      const src = all.find((p) => p.endsWith(`/${m}.ko`) || p.endsWith(`/${m}.ko.xz`));
      if (!src) throw new Error(`kernel module ${m} not found`);
      const dest = join(root, 'modules', `${m}.ko`);
      if (src.endsWith('.xz')) writeFileSync(dest, sh('xz', ['-dc', src]));
      else copyFileSync(src, dest);
    }
    writeFileSync(join(root, 'init'), INIT, { mode: 0o755 });
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
    const files = sh('find', ['.'], { cwd: root });
    const cpio = sh('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: root, input: files });
    writeFileSync(join(dir, `${initrdName()}.tmp`), gzipSync(cpio));
    // Renamed last, so a half-built cache is never taken for a whole one.
    sh('mv', [join(dir, 'vmlinux.tmp'), join(dir, 'vmlinux')]);
    sh('mv', [join(dir, `${initrdName()}.tmp`), join(dir, initrdName())]);
    for (const f of readdirSync(dir)) if (f.startsWith('initramfs') && f !== initrdName()) rmSync(join(dir, f), { force: true });
    return findAssets()!;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
