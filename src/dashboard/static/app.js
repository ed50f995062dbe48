// The berth dashboard. No build step: Preact through htm's standalone module, uPlot for the chart.
// The admin token lives in sessionStorage and goes on every request as `Authorization: Bearer`; the live feed is
// read with fetch and a streaming SSE parser because EventSource cannot send that header.
import { html, render, useEffect, useRef, useState } from './htm-preact.js';
import uPlot from './uPlot.js';

const TOKEN_KEY = 'berth-admin-token';
const authHeaders = (token) => ({ authorization: `Bearer ${token}` });

/** Yields {event, data} for each complete event of an SSE body. */
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const ev = { event: 'message', data: '' };
      for (const line of block.split('\n')) {
        const i = line.indexOf(':');
        if (i === 0) continue; // comment
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') ev.event = val;
        else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
      }
      yield ev;
    }
  }
}

/** Follows /admin/events: the latest snapshot, the chart history, and the connection state. */
function useFeed(token, onRefused) {
  const [snap, setSnap] = useState(null);
  const [history, setHistory] = useState([]);
  const [conn, setConn] = useState('connecting');
  useEffect(() => {
    const abort = new AbortController();
    let retry;
    const follow = async () => {
      try {
        const r = await fetch('events', { headers: authHeaders(token), signal: abort.signal, cache: 'no-store' });
        if (r.status === 401) return onRefused('The stored token is no longer accepted.');
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        setConn('live');
        for await (const ev of sseEvents(r.body)) {
          if (ev.event !== 'snapshot') continue;
          const s = JSON.parse(ev.data);
          if (s.history) setHistory(s.history);
          setSnap(s);
        }
        throw new Error('the stream ended');
      } catch {
        if (abort.signal.aborted) return;
        setConn('reconnecting'); // berth restarting, or the network: try again, the token stays
        retry = setTimeout(follow, 2000);
      }
    };
    follow();
    return () => {
      abort.abort();
      clearTimeout(retry);
    };
  }, [token]);
  return { snap, history, conn };
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function mib(memory) {
  return memory ? `${(memory.pssBytes / 1048576).toFixed(1)} MiB` : '—';
}

function Login({ message, onToken }) {
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const token = new FormData(e.target).get('token').trim();
    if (!token) return setError('Enter the admin token.');
    setBusy(true);
    try {
      const r = await fetch('status', { headers: authHeaders(token), cache: 'no-store' });
      if (r.status === 401) setError('That token was refused.');
      else if (!r.ok) setError(`berth answered HTTP ${r.status}.`);
      else onToken(token);
    } catch (err) {
      setError(`Could not reach berth: ${err.message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="login card" onSubmit=${submit}>
    <h1>berth</h1>
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="off" autofocus />
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <button type="submit" disabled=${busy}>Open dashboard</button>
  </form>`;
}

function Chart({ history }) {
  const box = useRef(null);
  const plot = useRef(null);
  const data = [history.map((p) => p.t / 1000), history.map((p) => p.sessions), history.map((p) => p.requestRate)];
  useEffect(() => {
    const el = box.current;
    plot.current = new uPlot(
      {
        width: el.clientWidth,
        height: 220,
        series: [
          {},
          { label: 'Live sessions', scale: 'n', stroke: '#2563eb', width: 2, value: (_, v) => (v ?? '—') },
          { label: 'Requests/s', scale: 'rps', stroke: '#d97706', width: 2, value: (_, v) => (v === null || v === undefined ? '—' : v.toFixed(2)) },
        ],
        // Always the hour up to the newest sample, so a young berth's few points sit at the right edge.
        scales: { x: { time: true, range: (_, min, max) => [max - 3600, max] }, n: { range: (_, min, max) => [0, Math.max(1, max)] }, rps: { range: (_, min, max) => [0, Math.max(1, max)] } },
        axes: [{ values: '{HH}:{mm}' }, { scale: 'n' }, { scale: 'rps', side: 1, grid: { show: false } }],
      },
      data,
      el,
    );
    const resize = new ResizeObserver(() => plot.current.setSize({ width: el.clientWidth, height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current.destroy();
    };
  }, []);
  useEffect(() => plot.current?.setData(data), [history]);
  return html`<div class="card chart" ref=${box}></div>`;
}

function EndButton({ id, token }) {
  // Two clicks: the first arms the button for a few seconds, so a stray click ends nobody's session.
  const [state, setState] = useState('idle');
  const [error, setError] = useState('');
  useEffect(() => {
    if (state !== 'armed') return;
    const t = setTimeout(() => setState('idle'), 4000);
    return () => clearTimeout(t);
  }, [state]);
  const click = async () => {
    if (state === 'idle') return setState('armed');
    setState('ending');
    const r = await fetch(`sessions/${encodeURIComponent(id)}`, { method: 'DELETE', headers: authHeaders(token) }).catch((e) => ({ ok: false, status: e.message }));
    if (!r.ok && r.status !== 404) {
      setError(`failed: ${r.status}`);
      setState('idle');
    }
  };
  const label = { idle: 'End', armed: 'Confirm end', ending: 'Ending…' }[state];
  return html`<button class=${`end ${state === 'armed' ? 'danger' : ''}`} disabled=${state === 'ending'} onClick=${click}>${label}</button>
    ${error && html` <span class="error">${error}</span>`}`;
}

function Sessions({ sessions, token }) {
  if (sessions.length === 0) return html`<p class="muted" id="no-sessions">No live sessions.</p>`;
  const rows = [...sessions].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return html`<div class="card scroll"><table id="sessions">
    <thead><tr>
      <th>Session</th><th>Runtime</th><th>Principal</th><th>Driver</th><th class="num">Age</th><th class="num">Idle</th>
      <th class="num">Idle expiry in</th><th class="num">Lifetime left</th><th class="num">In flight</th>
      <th class="num">Pending elicitations</th><th class="num">Memory (PSS)</th><th></th>
    </tr></thead>
    <tbody>${rows.map(
      // Only a prefix of the id is shown: without auth the id is the key to the session, and screenshots travel.
      (s) => html`<tr class="session" data-id=${s.id} key=${s.id}>
        <td><code>${s.id.slice(0, 8)}…</code></td>
        <td>${s.runtime}</td>
        <td class="principal" title=${s.principal.issuer ?? ''}>${s.principal.kind === 'anonymous' ? 'anonymous' : `${s.principal.subject} (${s.principal.kind})`}</td>
        <td>${s.driver}</td>
        <td class="num">${duration(s.ageSeconds)}</td>
        <td class="num">${duration(s.idleSeconds)}</td>
        <td class="num" title="— while a call is in flight">${duration(s.idleExpiresInSeconds)}</td>
        <td class="num">${duration(s.expiresInSeconds)}</td>
        <td class="num">${s.inFlight}</td>
        <td class="num">${s.pendingServerRequests ?? '—'}</td>
        <td class="num memory" title=${s.memory ? `${s.memory.processes} process(es)` : 'not readable'}>${mib(s.memory)}</td>
        <td>${s.state === 'live' ? html`<${EndButton} id=${s.id} token=${token} />` : html`<span class="muted">${s.state}</span>`}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

function Dashboard({ token, onRefused, onSignOut }) {
  const { snap, history, conn } = useFeed(token, onRefused);
  if (!snap) return html`<p class="muted">Connecting…</p>`;
  const runtimes = Object.entries(snap.runtimes);
  const rate = history.at(-1)?.requestRate ?? 0;
  return html`
    <header>
      <h1>berth</h1>
      <span class=${`badge ${snap.status}`}>${snap.status}</span>
      <span class="muted">up ${duration(snap.uptimeSeconds)}</span>
      <span class="spacer"></span>
      <span class=${`conn ${conn}`} id="conn">${conn === 'live' ? '● live' : `○ ${conn}…`}</span>
      <button onClick=${onSignOut}>Sign out</button>
    </header>
    <div class="stats">
      <div class="card"><div class="muted">Live sessions</div><div class="big" id="live-count">${snap.sessions.length}</div></div>
      <div class="card"><div class="muted">Requests/s (last ${snap.historyIntervalSeconds}s)</div><div class="big">${rate.toFixed(2)}</div></div>
      <div class="card"><div class="muted">Calls in flight</div><div class="big">${snap.sessions.reduce((n, s) => n + s.inFlight, 0)}</div></div>
    </div>
    <h2>Runtimes</h2>
    <div class="card scroll"><table id="runtimes">
      <thead><tr><th>Name</th><th>Mode</th><th>Upstream</th><th>Isolation</th><th>Auth</th><th class="num">Sessions</th><th class="num">Warm servers</th></tr></thead>
      <tbody>${runtimes.map(
        ([name, r]) => html`<tr key=${name}><td>${name}</td><td>${r.mode}</td><td>${r.upstream}</td><td>${r.isolation}</td><td>${r.auth}</td><td class="num">${r.sessions}</td><td class="num">${r.warm}</td></tr>`,
      )}</tbody>
    </table></div>
    <h2>Last hour</h2>
    <${Chart} history=${history} />
    <h2>Sessions</h2>
    <${Sessions} sessions=${snap.sessions} token=${token} />`;
}

function App() {
  const [token, setToken] = useState(() => sessionStorage.getItem(TOKEN_KEY));
  const [message, setMessage] = useState('');
  const signOut = (why = '') => {
    sessionStorage.removeItem(TOKEN_KEY);
    setMessage(why);
    setToken(null);
  };
  if (!token) {
    return html`<${Login} message=${message} onToken=${(t) => {
      sessionStorage.setItem(TOKEN_KEY, t);
      setMessage('');
      setToken(t);
    }} />`;
  }
  return html`<${Dashboard} token=${token} onRefused=${signOut} onSignOut=${() => signOut()} />`;
}

render(html`<${App} />`, document.getElementById('app'));
