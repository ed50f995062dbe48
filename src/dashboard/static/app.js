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

/** A CSS custom property of the page (the chart's canvas cannot use var()). */
const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const two = (n) => String(n).padStart(2, '0');
/** Local wall-clock time of epoch seconds, with seconds when the ticks are closer than a minute. */
function clock(t, withSeconds) {
  const d = new Date(t * 1000);
  return `${two(d.getHours())}:${two(d.getMinutes())}${withSeconds ? `:${two(d.getSeconds())}` : ''}`;
}
/** The newest value of a series: what the legend shows while the cursor is off the chart. */
const newest = (u, sidx) => u.data[sidx].at(-1) ?? null;
const legendValue = (format) => (u, v, sidx, idx) => {
  const x = idx === null || idx === undefined ? newest(u, sidx) : v;
  return x === null || x === undefined ? '—' : format(x);
};
/** The span around a lone first sample (it then sits in the middle); from two samples on, they fill the width. */
const MIN_SPAN_S = 60;

function Chart({ history, intervalSeconds }) {
  const figure = useRef(null);
  const box = useRef(null);
  const legend = useRef(null);
  const plot = useRef(null);
  const data = [history.map((p) => p.t / 1000), history.map((p) => p.sessions), history.map((p) => p.requestRate)];
  useEffect(() => {
    const el = box.current;
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--line'), width: 1 }, ticks: { stroke: cssVar('--line'), width: 1 } };
    plot.current = new uPlot(
      {
        width: el.clientWidth,
        height: 220,
        series: [
          { label: 'Time', value: legendValue((t) => clock(t, true)) },
          { label: 'Live sessions', scale: 'n', stroke: '#2563eb', width: 2, value: legendValue((v) => String(v)) },
          { label: 'Requests/s', scale: 'rps', stroke: '#d97706', width: 2, value: legendValue((v) => v.toFixed(2)) },
        ],
        scales: {
          // The span the samples cover (at most the history's hour), so the data fills the width.
          x: {
            time: true,
            range: (_, min, max) => {
              if (min === null || max === null) return [Date.now() / 1000 - MIN_SPAN_S, Date.now() / 1000];
              return max > min ? [min, max] : [min - MIN_SPAN_S / 2, max + MIN_SPAN_S / 2];
            },
          },
          n: { range: (_, min, max) => [0, Math.max(1, max ?? 0)] },
          rps: { range: (_, min, max) => [0, Math.max(1, max ?? 0)] },
        },
        axes: [
          // Whole seconds at least, and room for HH:MM:SS between ticks (a young history spans a few seconds).
          {
            ...axis,
            space: 70,
            incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600],
            values: (_, ticks, __, ___, incr) => ticks.map((t) => clock(t, incr < 60)),
          },
          // Whole sessions only: no 0.2 of a session between ticks.
          {
            ...axis,
            scale: 'n',
            incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
            values: (_, ticks) => ticks.map(String),
          },
          { ...axis, scale: 'rps', side: 1, grid: { show: false } },
        ],
        legend: { mount: (_, table) => legend.current.appendChild(table) },
        hooks: {
          // The shown time range, for people (title) and tests (data-x-min/max beside the samples' own
          // data-first/last, epoch seconds).
          setScale: [
            (u, key) => {
              if (key !== 'x') return;
              const f = figure.current;
              const t = u.data[0];
              Object.assign(f.dataset, {
                xMin: u.scales.x.min,
                xMax: u.scales.x.max,
                points: t.length,
                first: t[0] ?? '',
                last: t.at(-1) ?? '',
              });
              f.title = `${clock(u.scales.x.min, true)} – ${clock(u.scales.x.max, true)}`;
            },
          ],
        },
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
  return html`<figure class="card chart" ref=${figure} id="chart">
    <div class="chart-grid">
      <div class="axis-label y-left" id="axis-sessions"><span class="swatch sessions"></span>Live sessions (count)</div>
      <div class="plot" ref=${box}></div>
      <div class="axis-label y-right" id="axis-rate"><span class="swatch rate"></span>Request rate (requests/s)</div>
      <div class="axis-label x" id="axis-time">Time (local${intervalSeconds ? `, one sample every ${intervalSeconds}s` : ''})</div>
    </div>
    <div class="legend" ref=${legend}></div>
    ${history.length === 0 && html`<p class="muted">No samples yet.</p>`}
  </figure>`;
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
    const r = await fetch(`sessions/${encodeURIComponent(id)}`, { method: 'DELETE', headers: authHeaders(token) }).catch((e) => ({
      ok: false,
      status: e.message,
    }));
    if (!r.ok && r.status !== 404) {
      setError(`failed: ${r.status}`);
      setState('idle');
    }
  };
  const label = { idle: 'End', armed: 'Confirm end', ending: 'Ending…' }[state];
  return html`<button class=${`end ${state === 'armed' ? 'danger' : ''}`} disabled=${state === 'ending'} onClick=${click}>${label}</button>
    ${error && html` <span class="error">${error}</span>`}`;
}

/** A size for people: the largest binary unit that divides it (as berth's own flags print sizes). */
function size(bytes) {
  for (const [unit, n] of [
    ['GiB', 1073741824],
    ['MiB', 1048576],
    ['KiB', 1024],
  ])
    if (bytes >= n && bytes % n === 0) return `${bytes / n} ${unit}`;
  return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB` : `${bytes} B`;
}
/** A configured duration (whole seconds mostly) in its largest exact unit: 15m, 8h, 90s. */
function span(seconds) {
  for (const [unit, n] of [
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ])
    if (seconds >= n && seconds % n === 0) return `${seconds / n}${unit}`;
  return `${seconds * 1000}ms`;
}

/** The full session id: on hover (title), and copied with a click; where the clipboard is refused, shown selected. */
function SessionId({ id }) {
  const [state, setState] = useState('short');
  const field = useRef(null);
  useEffect(() => {
    if (state === 'copied') {
      const t = setTimeout(() => setState('short'), 2000);
      return () => clearTimeout(t);
    }
    if (state === 'select') field.current?.select();
  }, [state]);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(id); // only in a secure context (https, or localhost)
      setState('copied');
    } catch {
      setState('select');
    }
  };
  if (state === 'select') {
    return html`<input
      class="sid-full"
      ref=${field}
      readonly
      value=${id}
      size=${id.length}
      aria-label="Session id (press Ctrl+C to copy)"
      onBlur=${() => setState('short')}
    />`;
  }
  return html`<span class="sid-wrap"
    ><code class="sid" title=${id}>${id.slice(0, 8)}…</code>
    <button class="copy" title="Copy the full session id" aria-label="Copy the full session id" onClick=${copy}>
      ${state === 'copied' ? 'Copied' : 'Copy'}
    </button></span
  >`;
}

/** The session's limits besides memory (shown with its use); one the host does not enforce is marked and says why. */
function Limits({ limits }) {
  if (!limits) return html`<span class="muted">—</span>`;
  const off = (key) => limits.notEnforced.find((n) => n.startsWith(`${key}:`));
  const item = (key, text) => {
    const why = off(key);
    return html`<span
      class="limit ${why ? 'unenforced' : ''}"
      data-limit=${key}
      title=${why ? `not enforced on this host (${why.slice(key.length + 2)})` : ''}
      >${text}${why ? ' (not enforced)' : ''}</span
    >`;
  };
  return html`${[
    item('cpus', limits.cpus === null ? 'CPUs: no limit' : `CPUs: ${limits.cpus}`),
    item('pids', limits.pids === null ? 'pids: no limit' : `pids: ${limits.pids}`),
    item('disk', limits.diskBytes === null ? 'disk: no cap' : `disk: ${size(limits.diskBytes)}`),
    item('idle', `idle timeout: ${span(limits.idleTimeoutSeconds)}`),
    item('lifetime', `max lifetime: ${span(limits.maxLifetimeSeconds)}`),
    item('request', limits.requestTimeoutSeconds === null ? 'call timeout: none' : `call timeout: ${span(limits.requestTimeoutSeconds)}`),
  ]}`;
}

function Memory({ memory, limits }) {
  const memoryOff = limits?.notEnforced.find((n) => n.startsWith('memory:'));
  const limit = limits?.memoryBytes ? `of ${size(limits.memoryBytes)}${memoryOff ? ' (not enforced)' : ''}` : 'no limit';
  const title = [
    memory ? `${memory.processes} process(es)` : 'not readable',
    memoryOff && `limit not enforced on this host (${memoryOff.slice(8)})`,
  ]
    .filter(Boolean)
    .join('; ');
  return html`<span class="pss" title=${title}>${mib(memory)}</span><br /><span class="limit muted" data-limit="memory">${limit}</span>`;
}

function Sessions({ sessions, token }) {
  if (sessions.length === 0) return html`<p class="muted" id="no-sessions">No live sessions.</p>`;
  const rows = [...sessions].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return html`<div class="card scroll">
    <table id="sessions">
      <thead>
        <tr>
          <th>Session</th>
          <th>Runtime</th>
          <th>Principal</th>
          <th>Driver</th>
          <th class="num">Age</th>
          <th
            class="num"
            title="Time since the last message either way: client requests and answers, server progress, notifications and results"
          >
            Idle
          </th>
          <th class="num" title="Counts client traffic only; — while a call is in flight">Idle expiry in</th>
          <th class="num">Lifetime left</th>
          <th class="num">In flight</th>
          <th class="num">Pending elicitations</th>
          <th class="num">Memory (PSS)</th>
          <th>Limits</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          // Only a prefix of the id is on screen: without auth the id is the key to the session, and screenshots travel.
          // The whole id is one hover or one click away.
          (s) =>
            html`<tr class="session" data-id=${s.id} key=${s.id}>
              <td class="id"><${SessionId} id=${s.id} /></td>
              <td>${s.runtime}</td>
              <td class="principal" title=${s.principal.issuer ?? ''}>
                ${s.principal.kind === 'anonymous' ? 'anonymous' : `${s.principal.subject} (${s.principal.kind})`}
              </td>
              <td>${s.driver}</td>
              <td class="num">${duration(s.ageSeconds)}</td>
              <td class="num idle">${duration(s.idleSeconds)}</td>
              <td class="num" title="— while a call is in flight">${duration(s.idleExpiresInSeconds)}</td>
              <td class="num">${duration(s.expiresInSeconds)}</td>
              <td class="num">${s.inFlight}</td>
              <td class="num">${s.pendingServerRequests ?? '—'}</td>
              <td class="num memory"><${Memory} memory=${s.memory} limits=${s.limits} /></td>
              <td class="limits"><${Limits} limits=${s.limits} /></td>
              <td>
                ${s.state === 'live' ? html`<${EndButton} id=${s.id} token=${token} />` : html`<span class="muted">${s.state}</span>`}
              </td>
            </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

function Dashboard({ token, onRefused, onSignOut }) {
  const { snap, history, conn } = useFeed(token, onRefused);
  if (!snap) return html`<p class="muted">Connecting…</p>`;
  const runtimes = Object.entries(snap.runtimes);
  const rate = history.at(-1)?.requestRate ?? 0;
  return html` <header>
      <h1>berth</h1>
      <span class=${`badge ${snap.status}`}>${snap.status}</span>
      <span class="muted">up ${duration(snap.uptimeSeconds)}</span>
      <span class="spacer"></span>
      <span class=${`conn ${conn}`} id="conn">${conn === 'live' ? '● live' : `○ ${conn}…`}</span>
      <button onClick=${onSignOut}>Sign out</button>
    </header>
    <div class="stats">
      <div class="card">
        <div class="muted">Live sessions</div>
        <div class="big" id="live-count">${snap.sessions.length}</div>
      </div>
      <div class="card">
        <div class="muted">Requests/s (last ${snap.historyIntervalSeconds}s)</div>
        <div class="big">${rate.toFixed(2)}</div>
      </div>
      <div class="card">
        <div class="muted">Calls in flight</div>
        <div class="big">${snap.sessions.reduce((n, s) => n + s.inFlight, 0)}</div>
      </div>
    </div>
    <h2>Runtimes</h2>
    <div class="card scroll">
      <table id="runtimes">
        <thead>
          <tr>
            <th>Name</th>
            <th>Mode</th>
            <th>Upstream</th>
            <th>Server</th>
            <th>Isolation</th>
            <th>Auth</th>
            <th class="num">Sessions</th>
            <th class="num">Warm servers</th>
          </tr>
        </thead>
        <tbody>
          ${runtimes.map(
            ([name, r]) =>
              html`<tr key=${name}>
                <td>${name}</td>
                <td>${r.mode}</td>
                <td>${r.upstream}</td>
                <td class="server" title=${r.image ?? (r.command ?? []).join(' ')}>${r.image ?? (r.command ?? []).join(' ')}</td>
                <td>${r.isolation}</td>
                <td>${r.auth}</td>
                <td class="num">${r.sessions}</td>
                <td class="num">${r.warm}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </div>
    <h2>Sessions and requests <span class="muted">(up to the last hour)</span></h2>
    <${Chart} history=${history} intervalSeconds=${snap.historyIntervalSeconds} />
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
    return html`<${Login}
      message=${message}
      onToken=${(t) => {
        sessionStorage.setItem(TOKEN_KEY, t);
        setMessage('');
        setToken(t);
      }}
    />`;
  }
  return html`<${Dashboard} token=${token} onRefused=${signOut} onSignOut=${() => signOut()} />`;
}

render(html`<${App} />`, document.getElementById('app'));
