// OCI container images as a session server's root filesystem (AgentCore's deployment unit). berth never parses a
// registry or a layer itself: skopeo copies the image (from a registry, an OCI layout or a saved archive, with the
// host's registry credentials, verifying every blob's digest) into a private OCI layout, and umoci unpacks it. The
// unpacked root is kept once per manifest digest in a content-addressed cache and shared read-only by every
// session of every runtime that names that image; each session writes into a layer of its own (the drivers' job).
// Credentials stay on the host: skopeo reads them from REGISTRY_AUTH_FILE / ~/.docker/config.json / the
// containers auth file, and nothing of them is in the unpacked root or in a sandbox's environment.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { formatSize } from '../util/units.js';
import { isRoot, which } from './host.js';

/** What the image's config says to run, as umoci resolved it (user names through the image's /etc/passwd). */
export interface ImageProcess {
  args: string[];
  env: Record<string, string>;
  /** The working directory (WorkingDir), absolute inside the image. */
  cwd: string;
  uid: number;
  gid: number;
}

export interface ResolvedImage {
  /** The reference as configured. */
  ref: string;
  /** sha256:… of the image's manifest as its source holds it (the cache key). */
  digest: string;
  /** The reference pinned by that digest, for /healthz, the admin API and the dashboard. */
  pinned: string;
  /** The unpacked root filesystem: shared by every session, never written. */
  rootfs: string;
  process: ImageProcess;
  /** The one TCP port the image exposes, if it exposes exactly one. */
  exposedPort?: number;
  /** Whether this call unpacked it (false: it was in the cache). */
  unpacked: boolean;
}

export interface ImageCacheOptions {
  /** The cache's directory (default: imageCacheRoot()). */
  dir?: string;
  /** How long pulling and unpacking one image may take, ms. */
  pullTimeout: number;
  /** Most disk one image may take while copied and unpacked, bytes (0: no cap). */
  maxSize?: number;
  /** What relative oci:/archive paths are relative to (the runtime's directory). */
  baseDir: string;
}

/** A reference berth cannot resolve, or an image it cannot use; the message says which and why. */
export class ImageError extends Error {
  override name = 'ImageError';
}

const TRANSPORTS = ['docker://', 'oci:', 'oci-archive:', 'docker-archive:'] as const;
/** skopeo's other transports: a daemon, another tool's storage or a plain directory, none of them an image berth is given. */
const OTHER_TRANSPORTS = ['containers-storage:', 'docker-daemon:', 'dir:', 'ostree:', 'sif:', 'tarball:'];
const FORMS = 'use docker://NAME[:TAG|@DIGEST], oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE';

/**
 * Where unpacked images live: $BERTH_IMAGE_CACHE, else /var/cache/berth/images as root, else
 * $XDG_CACHE_HOME/berth/images.
 */
export function imageCacheRoot(configured?: string): string {
  if (configured) return configured;
  if (process.env.BERTH_IMAGE_CACHE) return process.env.BERTH_IMAGE_CACHE;
  if (isRoot()) return '/var/cache/berth/images';
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'berth', 'images');
}

/**
 * The reference in skopeo's transport:name form: a registry name without a transport is docker://; a relative
 * oci:/archive path is taken from baseDir. Refuses what skopeo would read from elsewhere (containers-storage,
 * dir:, a daemon), naming the forms berth takes.
 */
export function normaliseRef(ref: string, baseDir: string): string {
  const t = TRANSPORTS.find((p) => ref.startsWith(p));
  if (!t) {
    const other = OTHER_TRANSPORTS.find((p) => ref.startsWith(p));
    if (other) throw new ImageError(`image "${ref}": berth does not read images from ${other} (${FORMS})`);
    return `docker://${ref}`;
  }
  if (t === 'docker://') {
    if (ref.length === t.length) throw new ImageError(`image "${ref}": no image name after docker://`);
    return ref;
  }
  const rest = ref.slice(t.length);
  if (!rest) throw new ImageError(`image "${ref}": no path after ${t}`);
  return isAbsolute(rest) ? ref : `${t}${resolve(baseDir, rest)}`;
}

/** The file or directory a local reference reads (its :TAG or :NAME:TAG removed), or undefined for a registry. */
function localPath(ref: string): string | undefined {
  if (ref.startsWith('docker://')) return undefined;
  const rest = ref.slice(ref.indexOf(':') + 1);
  const colon = rest.indexOf(':');
  return colon === -1 ? rest : rest.slice(0, colon);
}

function tool(name: 'skopeo' | 'umoci'): string {
  const p = which(name);
  if (!p) throw new ImageError(`container images need ${name} (apt-get install skopeo umoci)`);
  return p;
}

/** A cap on the disk a pull takes: `dir` (what it writes into) may hold at most `bytes`. */
interface DiskCap {
  dir: string;
  bytes: number;
}

/** The disk `dir` takes (allocated blocks: a sparse file counts what it really uses); what vanished meanwhile is 0. */
export async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      total += ((await lstat(p).catch(() => undefined))?.blocks ?? 0) * 512;
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return total;
}

const overCap = (what: string, cap: DiskCap) =>
  new ImageError(`${what}: it takes more than ${formatSize(cap.bytes)} of disk (imageCache.maxSize)`);

/**
 * Runs a tool to its end within `timeoutMs`; its stdout, or an ImageError with the last line it wrote. With a `cap`,
 * the disk under cap.dir is measured every second while it runs, and the tool is stopped once it is over: a layer
 * that unpacks to far more than it weighs (a compression bomb) must not fill berth's disk.
 */
function exec(file: string, args: string[], timeoutMs: number, what: string, cap?: DiskCap): Promise<Buffer> {
  return new Promise((resolveOut, reject) => {
    let over = false;
    let watching: NodeJS.Timeout | undefined;
    const child = execFile(
      file,
      args,
      { encoding: 'buffer', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' },
      (e, out, err) => {
        clearTimeout(watching);
        watching = undefined;
        if (over) return reject(overCap(what, cap!));
        if (!e) return resolveOut(out);
        const killed = (e as { killed?: boolean }).killed;
        const last = err.toString('utf8').trim().split('\n').filter(Boolean).pop() ?? e.message;
        const why = tidy(last);
        const corrupt = /digest did not match|checksum mismatch|verify.*digest/i.test(why)
          ? 'a layer does not match its digest (corrupted or tampered with): '
          : '';
        reject(new ImageError(killed ? `${what}: took longer than ${timeoutMs} ms (imageCache.pullTimeout)` : `${what}: ${corrupt}${why}`));
      },
    );
    if (!cap || cap.bytes <= 0) return;
    const measure = async () => {
      if ((await diskUsage(cap.dir)) > cap.bytes && child.exitCode === null) {
        over = true;
        child.kill('SIGKILL');
      } else if (watching) watching = setTimeout(() => void measure(), 1000);
    };
    watching = setTimeout(() => void measure(), 1000);
  });
}

/** skopeo/umoci lines carry a log prefix (time="…" level=fatal msg="…"): the message alone. */
function tidy(line: string): string {
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(line);
  return (m ? m[1]!.replace(/\\"/g, '"') : line).slice(0, 500);
}

/** Node's arch as OCI names it. */
const OCI_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

interface Meta {
  ref: string;
  digest: string;
  process: ImageProcess;
  exposedPort?: number;
}

/** One unpack at a time per digest within this process; across processes the final rename decides. */
const inFlight = new Map<string, Promise<void>>();

/**
 * Resolves an image to its unpacked root: skopeo reads the manifest (its digest is the cache key); a digest already
 * in the cache is used as it is, else the image is copied (every blob verified) and unpacked into a temporary
 * directory that is renamed into place whole, so a half-unpacked root is never used.
 */
export async function resolveImage(configured: string, o: ImageCacheOptions): Promise<ResolvedImage> {
  const ref = normaliseRef(configured, o.baseDir);
  const local = localPath(ref);
  if (local !== undefined && !existsSync(local)) throw new ImageError(`image "${configured}": ${local} does not exist`);
  const skopeo = tool('skopeo');
  const manifest = await exec(skopeo, ['inspect', '--raw', ref], o.pullTimeout, `image "${configured}": cannot read its manifest`);
  const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const root = imageCacheRoot(o.dir);
  const dir = join(root, digest.replace(':', '-'));
  let unpacked = false;
  if (!existsSync(join(dir, 'berth-image.json'))) {
    let p = inFlight.get(dir);
    if (!p) {
      unpacked = true;
      p = unpack(ref, configured, digest, root, dir, o.pullTimeout, o.maxSize ?? 0).finally(() => inFlight.delete(dir));
      inFlight.set(dir, p);
    }
    await p;
  }
  const meta = JSON.parse(readFileSync(join(dir, 'berth-image.json'), 'utf8')) as Meta;
  return {
    ref: configured,
    digest,
    pinned: pinnedRef(ref, digest),
    rootfs: join(dir, 'rootfs'),
    process: meta.process,
    exposedPort: meta.exposedPort,
    unpacked,
  };
}

/** A registry reference with its tag replaced by the digest; a local one named with the digest beside it. */
function pinnedRef(ref: string, digest: string): string {
  if (!ref.startsWith('docker://')) return `${ref}@${digest}`;
  const name = ref.slice('docker://'.length).replace(/@sha256:[0-9a-f]+$/, '');
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  return `docker://${colon > slash ? name.slice(0, colon) : name}@${digest}`;
}

async function unpack(
  ref: string,
  configured: string,
  digest: string,
  root: string,
  dir: string,
  timeoutMs: number,
  maxSize: number,
): Promise<void> {
  // Root's alone: unpacked as root, a layer keeps its device nodes and setuid files, which no host user may reach
  // (sandboxes see the root through their own nodev,nosuid overlay; gVisor's gofer runs as root).
  mkdirSync(root, { recursive: true, mode: 0o700 });
  if (isRoot()) chmodSync(root, 0o700);
  const tmp = await mkdtemp(join(root, '.unpacking-'));
  try {
    const layout = join(tmp, 'layout');
    const bundle = join(tmp, 'bundle');
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const cap = { dir: tmp, bytes: maxSize };
    await exec(tool('skopeo'), ['copy', '--quiet', ref, `oci:${layout}:image`], left(), `image "${configured}": cannot copy it`, cap);
    // As root the image's owners are kept (the drivers map them); otherwise every file becomes berth's user's.
    const rootless = isRoot() ? [] : ['--rootless'];
    await exec(
      tool('umoci'),
      ['unpack', ...rootless, '--image', `${layout}:image`, bundle],
      left(),
      `image "${configured}": cannot unpack it`,
      cap,
    );
    // What finished between two measurements is measured once more, whole.
    if (maxSize > 0 && (await diskUsage(tmp)) > maxSize) throw overCap(`image "${configured}": cannot unpack it`, cap);
    const meta = readMeta(bundle, configured, digest);
    writeFileSync(join(bundle, 'berth-image.json'), JSON.stringify(meta, null, 2));
    chmodSync(bundle, 0o755); // umoci makes it 0700; the rootfs under it keeps the image's own modes
    try {
      renameSync(bundle, dir);
    } catch (e) {
      // Another berth unpacked the same digest meanwhile: same content, theirs stays.
      if (!existsSync(join(dir, 'berth-image.json'))) throw e;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** The server's process from the runtime spec umoci generated out of the image's config. */
function readMeta(bundle: string, configured: string, digest: string): Meta {
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process?: { args?: string[]; env?: string[]; cwd?: string; user?: { uid?: number; gid?: number } };
    annotations?: Record<string, string>;
  };
  const a = spec.annotations ?? {};
  const arch = a['org.opencontainers.image.architecture'];
  const want = OCI_ARCH[process.arch] ?? process.arch;
  if (arch && arch !== want) throw new ImageError(`image "${configured}": built for ${arch}, this host runs ${want}`);
  const os = a['org.opencontainers.image.os'];
  if (os && os !== 'linux') throw new ImageError(`image "${configured}": built for ${os}, not linux`);
  const env: Record<string, string> = {};
  for (const kv of spec.process?.env ?? []) {
    // No environment can hold a NUL (exec takes C strings); the drivers pass the Env on as NUL-separated arguments.
    if (kv.includes('\0')) throw new ImageError(`image "${configured}": its Env has a NUL byte in ${JSON.stringify(kv.split('=')[0])}`);
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  delete env.TERM; // umoci adds TERM=xterm; the server has no terminal
  const ports = (a['org.opencontainers.image.exposedPorts'] ?? '')
    .split(',')
    .filter((p) => /^\d+(\/tcp)?$/.test(p))
    .map((p) => Number.parseInt(p, 10));
  return {
    ref: configured,
    digest,
    process: {
      args: spec.process?.args ?? [],
      env,
      cwd: spec.process?.cwd || '/',
      uid: spec.process?.user?.uid ?? 0,
      gid: spec.process?.user?.gid ?? 0,
    },
    exposedPort: ports.length === 1 ? ports[0] : undefined,
  };
}
