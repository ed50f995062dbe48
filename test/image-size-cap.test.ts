// imageCache.maxSize: an image whose layer unpacks to far more than it weighs (a compression bomb: 64 MiB of zeros,
// well under 1 MiB compressed) is refused once it takes more disk than the cap, naming the key, and leaves nothing
// in the cache; the same image under a larger cap unpacks. The image is built here with umoci, as an OCI layout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { resolveImage, diskUsage } from '../src/sandbox/image.ts';
import { ROOT } from './helpers/berth.ts';

const run = promisify(execFile);
const missing = ['umoci', 'skopeo'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip = missing.length ? `needs ${missing.join(', ')} (apt-get install umoci skopeo)` : false;
const rootless = process.getuid?.() === 0 ? [] : ['--rootless'];
const MiB = 1024 * 1024;

describe('imageCache.maxSize', { skip, timeout: 180_000 }, () => {
  let top: string;
  let layout: string;
  before(async () => {
    top = mkdtempSync(join(tmpdir(), 'berth-image-cap-'));
    layout = join(top, 'layout');
    const bundle = join(top, 'bundle');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:bomb`]);
    await run('umoci', ['unpack', ...rootless, '--image', `${layout}:bomb`, bundle]);
    writeFileSync(join(bundle, 'rootfs', 'zeros'), Buffer.alloc(64 * MiB));
    await run('umoci', ['repack', '--image', `${layout}:bomb`, bundle]);
    rmSync(bundle, { recursive: true, force: true });
  });
  after(() => rmSync(top, { recursive: true, force: true }));

  test('the image weighs little and unpacks to much: past the cap it is refused, naming the key, and nothing is kept', async () => {
    assert.ok((await diskUsage(layout)) < 4 * MiB, 'the layer is small compressed');
    const cache = join(top, 'cache-small');
    await assert.rejects(
      resolveImage(`oci:${layout}:bomb`, { dir: cache, pullTimeout: 120_000, maxSize: 16 * MiB, baseDir: ROOT }),
      /image "oci:.*:bomb": cannot (copy|unpack) it: it takes more than 16MiB of disk \(imageCache\.maxSize\)/,
    );
    assert.deepEqual(readdirSync(cache), [], 'no unpacked root and no half-unpacked directory left');
  });

  test('under a cap it fits (or with none) the same image unpacks', async () => {
    for (const maxSize of [128 * MiB, 0]) {
      const cache = join(top, `cache-${maxSize}`);
      const img = await resolveImage(`oci:${layout}:bomb`, { dir: cache, pullTimeout: 120_000, maxSize, baseDir: ROOT });
      assert.equal(img.unpacked, true);
      assert.ok((await diskUsage(img.rootfs)) >= 64 * MiB);
    }
  });

  test('berth image prefetch --max-size refuses it the same way, and exits non-zero', async () => {
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'bin/berth.js'), 'image', 'prefetch', `oci:${layout}:bomb`, '--cache', join(top, 'cache-cli'), '--max-size', '16MiB'],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /takes more than 16MiB of disk \(imageCache\.maxSize\)/);
  });
});
