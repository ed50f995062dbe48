// berth's JSON log destination (src/log.ts): lines are gathered and written together, and none is lost when the
// process exits, naturally or through process.exit(). Each case runs the built logger in a real child process
// and reads its stderr through a pipe, as an operator's log collector would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const logModule = fileURLToPath(new URL('../dist/log.js', import.meta.url));

interface Run {
  code: number | null;
  chunks: string[];
  stderr: string;
}

/** Runs `body` (with `log` from createLogger in scope) in a child; returns its exit code and stderr as read. */
function run(body: string, env: Record<string, string> = {}): Promise<Run> {
  const script = `import { createLogger } from ${JSON.stringify(logModule)};\nconst log = createLogger();\n${body}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, BERTH_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const chunks: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (c: string) => chunks.push(c));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, chunks, stderr: chunks.join('') })));
}

const lines = (r: Run) =>
  r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { i?: number; msg: string });

test('lines logged close together reach stderr in one write', async () => {
  // Five lines 1 ms apart: written one by one, each would be its own write(2), so its own chunk for the reader
  // unless the reader happened to be slower than all five. Gathered (BERTH_LOG_FLUSH 200ms), they are one write.
  const r = await run(`for (let i = 0; i < 5; i++) { log.info({ i }, 'line'); await new Promise((r) => setTimeout(r, 1)); }`, {
    BERTH_LOG_FLUSH: '200ms',
  });
  assert.equal(r.code, 0);
  assert.deepEqual(
    lines(r).map((l) => l.i),
    [0, 1, 2, 3, 4],
  );
  assert.equal(r.chunks.length, 1, `read in ${r.chunks.length} chunks`);
});

test('a gathered line is written while the process runs on, without waiting for its exit', async () => {
  // The child logs one line and then stays up for 60 s; the test reads the line and ends the child. A line left in
  // the buffer until exit would never be read before the kill.
  const script = `import { createLogger } from ${JSON.stringify(logModule)};\ncreateLogger().info('one');\nsetTimeout(() => {}, 60_000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, BERTH_LOG_FORMAT: 'json', BERTH_LOG_FLUSH: '50ms' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  await new Promise<void>((resolve) =>
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      if (stderr.includes('\n')) resolve();
    }),
  );
  assert.equal(child.exitCode, null, 'the child was still running when its line arrived');
  child.kill('SIGKILL');
  assert.match(stderr, /"msg":"one"/);
});

test('process.exit() right after logging loses no line', async () => {
  const r = await run(`for (let i = 0; i < 1000; i++) log.info({ i, pad: 'x'.repeat(100) }, 'line');\nprocess.exit(3);`);
  assert.equal(r.code, 3);
  const got = lines(r);
  assert.equal(got.length, 1000);
  assert.deepEqual(
    got.map((l) => l.i),
    Array.from({ length: 1000 }, (_, i) => i),
  );
});

test('a natural exit loses no line', async () => {
  const r = await run(`for (let i = 0; i < 1000; i++) log.info({ i, pad: 'x'.repeat(100) }, 'line');`);
  assert.equal(r.code, 0);
  assert.equal(lines(r).length, 1000);
});

test('BERTH_LOG_FLUSH=0 writes each line at once; a value without a unit is refused, naming the variable', async () => {
  const zero = await run(`log.info('a'); log.info('b');`, { BERTH_LOG_FLUSH: '0' });
  assert.deepEqual(
    lines(zero).map((l) => l.msg),
    ['a', 'b'],
  );
  const bad = await run(`log.info('never');`, { BERTH_LOG_FLUSH: '5' });
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /BERTH_LOG_FLUSH: invalid duration "5": say its unit/);
});
