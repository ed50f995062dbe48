// /readyz with several runtimes: one runtime whose servers fail to start (a hostile server can make its own fail, on
// a timer or a flag it fetches) must not take the whole node out of a load balancer, and with it every other
// runtime's live sessions. The node is ready while any runtime is; /readyz?runtime=NAME answers for one. Real berth,
// a server that exits at once beside the probe server.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ACCEPT_BOTH, connect, initBody, PROBE, serveConfig, type BerthProcess } from './helpers/berth.ts';
import { waitFor } from './helpers/unit.ts';

let berth: BerthProcess;
before(async () => {
  berth = await serveConfig({
    server: { port: 0 },
    runtimes: {
      good: { command: PROBE, isolation: 'process', warmPool: 1 },
      bad: { command: [process.execPath, '-e', 'process.exit(3)'], isolation: 'process', warmPool: 1 },
    },
  });
});
after(() => berth?.stop());

const readyz = async (query = '') => {
  const r = await fetch(new URL(`/readyz${query}`, berth.url));
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};

test('a runtime whose servers fail leaves the node ready while another runtime is; ?runtime=NAME answers for one', async () => {
  // Until the good runtime has its warm server and the bad one has failed at least once (both within 60 s).
  let node = await readyz();
  for (let i = 0; i < 240 && !(node.body.runtimes?.good?.ready && /fail to start/.test(node.body.runtimes?.bad?.reasons?.[0] ?? '')); i++) {
    await new Promise((r) => setTimeout(r, 250));
    node = await readyz();
  }
  assert.equal(node.status, 200, JSON.stringify(node.body));
  assert.equal(node.body.ready, true);
  assert.equal(node.body.runtimes.bad.ready, false);
  assert.match(node.body.runtimes.bad.reasons[0], /runtime bad: its servers fail to start/);

  const bad = await readyz('?runtime=bad');
  assert.equal(bad.status, 503);
  assert.match(bad.body.reasons[0], /runtime bad: its servers fail to start/);
  assert.deepEqual(Object.keys(bad.body.runtimes), ['bad']);
  assert.equal((await readyz('?runtime=good')).status, 200);

  const unknown = await readyz('?runtime=nope');
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.error.message, /no runtime named "nope"/);
});

test('an ended session whose server has not stopped yet still holds its place: /readyz says so while an initialize gets 503', async () => {
  // The probe server, made to outlive SIGTERM and its stdin's end: berth's stop then waits stopGrace before SIGKILL.
  const [node, ...rest] = PROBE;
  const stubborn = [node!, '--import', "data:text/javascript,process.on('SIGTERM',()=>{});setInterval(()=>{},60000)", ...rest];
  const one = await serveConfig({
    server: { port: 0 },
    runtimes: { default: { command: stubborn, isolation: 'process', warmPool: 0, limits: { maxSessions: 1, stopGrace: '8s' } } },
  });
  try {
    const ready = async () => {
      const r = await fetch(new URL('/readyz', one.url));
      return { status: r.status, body: (await r.json()) as { reasons: string[] } };
    };
    const c = await connect(one.url);
    assert.match((await ready()).body.reasons.join(), /at maxSessions \(1\)/);
    // DELETE answers once the server has stopped: sent, not awaited, while the session ends.
    const deleted = c.transport.terminateSession();
    await waitFor(() => /"audit":"session.ended"/.test(one.logs()), 'the session to end');
    // Ended, its server still running out its stopGrace: no place for a new session, and /readyz agrees.
    const init = await fetch(one.url, {
      method: 'POST',
      headers: { accept: ACCEPT_BOTH, 'content-type': 'application/json' },
      body: initBody(),
    });
    assert.equal(init.status, 503, await init.text());
    const r = await ready();
    assert.equal(r.status, 503);
    assert.match(r.body.reasons.join(), /at maxSessions \(1; 1 of them ended or starting/);
    // Once the server is gone, the place is free again.
    let after = r;
    for (let i = 0; i < 120 && after.status !== 200; i++) {
      await new Promise((res) => setTimeout(res, 250));
      after = await ready();
    }
    assert.equal(after.status, 200, JSON.stringify(after.body));
    await deleted;
    await (await connect(one.url)).transport.terminateSession();
  } finally {
    await one.stop();
  }
});
