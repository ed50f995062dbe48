// berth serve with a config file, config validation errors, the generated schema docs, and the library API.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { stringify } from 'yaml';
import { RuntimeSchema, startSlots, WARM_POOL_AUTO } from '../src/config/schema.ts';
import { createRuntime, loadConfigFile } from '../src/index.ts';
import { generate } from '../scripts/gen-schema.ts';
import { connect, PROBE, ROOT, startBerth, textOf, type BerthProcess } from './helpers/berth.ts';
import { tempDir } from './helpers/temp.ts';

const dir = tempDir('berth-config-test-');

describe('berth serve --config', () => {
  let berth: BerthProcess;
  before(async () => {
    const file = join(dir, 'berth.yaml');
    writeFileSync(
      file,
      stringify({
        server: { port: 0 },
        runtimes: {
          default: { command: PROBE, warmPool: 1 },
          tools: { command: PROBE, mode: 'stateless', warmPool: 1 },
          web: { command: [...PROBE, '--http'], upstream: 'http', warmPool: 1, idleTimeout: '1m' },
        },
      }),
    );
    berth = await startBerth(['serve', '--config', file]);
  });
  after(() => berth.stop());

  test('each named runtime is served at /runtimes/NAME/mcp, the default one also at /mcp', async () => {
    const base = new URL(berth.url).origin;
    for (const path of ['/mcp', '/runtimes/default/mcp', '/runtimes/tools/mcp', '/runtimes/web/mcp']) {
      const { client, transport } = await connect(base + path);
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: path } })), path, path);
      assert.equal(transport.sessionId === undefined, path.includes('tools'), `${path}: session id only when stateful`);
      if (transport.sessionId) await transport.terminateSession();
      await client.close();
    }
  });

  test('/healthz reports each runtime', async () => {
    const r = await fetch(new URL('/healthz', berth.url));
    const body = await r.json();
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(body.runtimes).sort(), ['default', 'tools', 'web']);
    assert.equal(body.runtimes.tools.mode, 'stateless');
  });
});

describe('config validation', () => {
  const check = (yamlText: string) => {
    const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, yamlText);
    const r = spawnSync(process.execPath, ['bin/berth.js', 'serve', '--config', file], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    return { file, status: r.status, stderr: r.stderr };
  };

  test('errors name the file, the key and what is wrong', () => {
    const r = check('runtimes:\n  a:\n    command: [node]\n    idleTimeout: 5 minutes\n    mode: sometimes\n    colour: blue\n');
    assert.equal(r.status, 2);
    assert.match(r.stderr, new RegExp(`${r.file}: runtimes\\.a\\.idleTimeout: expected a duration`));
    assert.match(r.stderr, /runtimes\.a\.mode: .*stateful.*stateless/);
    assert.match(r.stderr, /runtimes\.a: Unrecognized key: "colour"/);
  });

  test('limits.maxConcurrentStarts: auto (the default) is half the cores, at least 1 (2 for microvm and gvisor sandboxes); a number is taken; anything else is refused', () => {
    const parse = (limits: unknown) => RuntimeSchema.parse({ command: ['node'], ...(limits === undefined ? {} : { limits }) });
    const half = Math.floor(availableParallelism() / 2);
    assert.equal(parse(undefined).limits.maxConcurrentStarts, 'auto', 'resolved once the sandbox driver is known');
    for (const driver of ['process', 'namespace']) assert.equal(startSlots('auto', driver), Math.max(1, half), driver);
    for (const driver of ['microvm', 'gvisor']) assert.equal(startSlots('auto', driver), Math.max(2, half), driver);
    assert.equal(parse({ maxConcurrentStarts: 7 }).limits.maxConcurrentStarts, 7);
    assert.equal(startSlots(1, 'microvm'), 1, 'a number is kept, whatever the driver');
    // The warm pool's default follows demand too (issue 17: a repeated burst finds its servers ready).
    assert.deepEqual(parse(undefined).warmPool, { ...WARM_POOL_AUTO });
    const r = check('server: {port: 0}\nruntimes:\n  a:\n    command: [node]\n    limits: {maxConcurrentStarts: 0}\n');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /runtimes\.a\.limits\.maxConcurrentStarts: /);
  });

  test('YAML syntax errors name the file and line', () => {
    const r = check('runtimes: [\n');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /YAML: .*line 2/);
  });

  test('a runtime is required; unknown isolation kinds are refused', () => {
    assert.match(check('server: {port: 0}\n').stderr, /runtimes: /);
    const r = check('server: {port: 0}\nruntimes:\n  a:\n    command: [node]\n    isolation: chroot\n');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /runtimes\.a\.isolation: .*process/);
  });

  test('berth run: bad durations and isolation kinds are clear errors', () => {
    const bad = spawnSync(process.execPath, ['bin/berth.js', 'run', '--idle-timeout', '5x', '--', 'node'], { cwd: ROOT, encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /invalid duration "5x"/);
    const iso = spawnSync(process.execPath, ['bin/berth.js', 'run', '--port', '0', '--isolation', 'vm', '--', 'node'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(iso.status, 2);
    assert.match(iso.stderr, /unknown --isolation "vm"; expected one of: auto, process/);
  });

  test('durations beyond what a timer holds, allowNet without egress, and bare numbers are refused', () => {
    const r = check(
      'runtimes:\n  a:\n    command: [node]\n    maxLifetime: 600h\n  b:\n    command: [node]\n    network: none\n    allowNet: [10.0.0.0/8]\n  c:\n    command: [node]\n    idleTimeout: 5\n    limits: {memory: "256", disk: 0, requestTimeout: "0"}\n',
    );
    assert.equal(r.status, 2);
    assert.match(r.stderr, /runtimes\.a\.maxLifetime: durations longer than 24 days/);
    assert.match(r.stderr, /runtimes\.b\.allowNet: allowNet applies to network egress only/);
    // 5 what? A bare number (or numeric string) is refused; 0 means the same in every unit and stays allowed.
    assert.match(r.stderr, /runtimes\.c\.idleTimeout: expected a duration with its unit/);
    assert.match(r.stderr, /runtimes\.c\.limits\.memory: expected a size with its unit/);
    assert.doesNotMatch(r.stderr, /disk|requestTimeout/);
  });

  test('berth run: a bare number for a duration or size flag is refused, naming the flag and an example', () => {
    const d = spawnSync(process.execPath, ['bin/berth.js', 'run', '--idle-timeout', '5', '--', 'node'], { cwd: ROOT, encoding: 'utf8' });
    assert.notEqual(d.status, 0);
    assert.match(d.stderr, /--idle-timeout <duration>' argument '5' is invalid.*e\.g\. 5s or 5m/);
    const s = spawnSync(process.execPath, ['bin/berth.js', 'run', '--memory', '256', '--', 'node'], { cwd: ROOT, encoding: 'utf8' });
    assert.notEqual(s.status, 0);
    assert.match(s.stderr, /--memory <size>' argument '256' is invalid.*e\.g\. 256MiB/);
    const help = spawnSync(process.execPath, ['bin/berth.js', 'run', '--help'], { cwd: ROOT, encoding: 'utf8' }).stdout.replace(
      /\s+/g,
      ' ',
    );
    for (const d of ['"15m"', '"8h"', '"4MiB"', '"200ms"']) assert.ok(help.includes(`(default: ${d})`), `help shows ${d}`);
  });

  test('the bundled example config is valid', () => {
    const r = spawnSync(process.execPath, ['bin/berth.js', 'check', '--config', 'examples/berth.yaml'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });

  test("a runtime's relative cwd is relative to the config file, not to where berth runs; an absolute one is kept", () => {
    const sub = join(dir, 'conf');
    mkdirSync(sub, { recursive: true });
    const file = join(sub, 'rel.yaml');
    writeFileSync(
      file,
      stringify({ runtimes: { a: { command: ['x'], cwd: '../srv' }, b: { command: ['x'], cwd: '/opt/x' }, c: { command: ['x'] } } }),
    );
    const c = loadConfigFile(relative(process.cwd(), file)); // named relative to where this test runs, as a user would
    assert.equal(c.runtimes.a!.cwd, join(dir, 'srv'));
    assert.equal(c.runtimes.b!.cwd, '/opt/x');
    assert.equal(c.runtimes.c!.cwd, undefined, 'no cwd: where berth started, decided at start');
  });

  test('docs/config.md and docs/config.schema.json are generated from the current schema', () => {
    const { json, markdown } = generate();
    assert.equal(readFileSync(join(ROOT, 'docs/config.schema.json'), 'utf8'), json, 'run npm run schema');
    assert.equal(readFileSync(join(ROOT, 'docs/config.md'), 'utf8'), markdown, 'run npm run schema');
  });
});

describe('library API', () => {
  test('createRuntime starts, emits session events, and stops', async () => {
    const berth = createRuntime({ server: { port: 0 }, runtimes: { default: { command: PROBE, warmPool: 1, idleTimeout: '1m' } } });
    const events: string[] = [];
    berth.on('session:created', (s, rt) => events.push(`created:${rt}:${s.id}`));
    berth.on('session:ended', (s, rt, reason) => events.push(`ended:${rt}:${s.id}:${reason}`));
    await berth.start();
    try {
      const { client, transport } = await connect(berth.endpoint());
      const id = transport.sessionId!;
      await transport.terminateSession();
      await client.close();
      assert.deepEqual(events, [`created:default:${id}`, `ended:default:${id}:deleted`]);
    } finally {
      await berth.stop();
    }
  });

  test('createRuntime rejects bad config with the key named', () => {
    assert.throws(() => createRuntime({ runtimes: { a: { command: ['x'], warmPool: -1 } } } as never), /runtimes\.a\.warmPool/);
  });
});
