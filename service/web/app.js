/*
 * The loadtestd dashboard: a small single-page app over the JSON API (no libraries).
 *
 * Views (hash routes): #/ the run list, #/runs/ID one run with live charts, #/runs/ID/compare?base=B
 * a comparison against a baseline. Every request goes through api(), which adds the bearer token
 * kept in sessionStorage and, on 401, asks for one and retries. A view returns a stop function
 * that clears its timers when the route changes. Charts are drawn on canvas by drawChart().
 */
'use strict';

(function () {
  const TOKEN_KEY = 'loadtestd.token';
  const FINAL = ['passed', 'failed', 'error', 'cancelled', 'interrupted'];
  const STATUSES = ['queued', 'running'].concat(FINAL);
  const KINDS = ['capacity', 'ratelimit', 'generate'];
  const LIST_REFRESH_MS = 3000;
  const RUN_POLL_MS = 1000;

  const main = document.getElementById('main');
  let stopView = null;

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of [].concat(children || [])) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function fmtNum(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return '–';
    if (Array.isArray(x)) return x.map((v) => fmtNum(v, digits)).join(' – ');
    if (typeof x !== 'number') return String(x);
    const d = digits === undefined ? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2) : digits;
    const fixed = digits !== undefined && !Number.isInteger(x);
    return x.toLocaleString('en-US', { minimumFractionDigits: fixed ? d : 0, maximumFractionDigits: d });
  }

  function fmtMs(x) { return x === null || x === undefined ? '–' : fmtNum(x, x >= 100 ? 1 : 2) + ' ms'; }
  function fmtPct(x) { return x === null || x === undefined ? '–' : fmtNum(x * 100, 2) + '%'; }

  function fmtBytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return fmtNum(n, i ? 1 : 0) + ' ' + units[i];
  }

  function fmtTime(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    return d.toLocaleString('en-GB', { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function fmtAgo(iso) {
    if (!iso) return '–';
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return Math.round(s) + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }

  function fmtDuration(run) {
    if (!run.started_at) return '–';
    const end = run.finished_at ? new Date(run.finished_at) : new Date();
    const s = Math.max(0, (end - new Date(run.started_at)) / 1000);
    if (s < 60) return fmtNum(s, 1) + ' s';
    return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  }

  function statusBadge(status) {
    return el('span', { class: 'badge status-' + status, 'data-role': 'status', text: status });
  }

  function verdictPill(v) {
    if (!v || typeof v.pass !== 'boolean') return el('span', { class: 'muted', text: '–' });
    return el('span', { class: 'pill ' + (v.pass ? 'pass' : 'fail'), 'data-role': 'verdict', text: v.pass ? 'PASS' : 'FAIL' });
  }

  function kv(rows) {
    return el('dl', { class: 'kv' }, rows.filter(Boolean).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', {}, [v])]));
  }

  function card(title, children, attrs) {
    return el('section', Object.assign({ class: 'card' }, attrs || {}), [title ? el('h3', { text: title }) : null].concat(children));
  }

  function errorBox(message) {
    return el('div', { class: 'notice error', role: 'alert', text: message });
  }

  // ------------------------------------------------------------------ API and token

  let tokenWaiters = null;

  function askToken(message) {
    const overlay = document.getElementById('token-overlay');
    const input = document.getElementById('token-input');
    document.getElementById('token-error').textContent = message || '';
    overlay.classList.remove('hidden');
    input.value = '';
    input.focus();
    if (!tokenWaiters) tokenWaiters = [];
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }

  function submitToken() {
    const input = document.getElementById('token-input');
    const t = input.value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    document.getElementById('token-overlay').classList.add('hidden');
    document.getElementById('signout').classList.remove('hidden');
    const waiters = tokenWaiters || [];
    tokenWaiters = null;
    waiters.forEach((w) => w());
  }

  /* GET/POST path; returns {status, etag, json}. A 401 asks for a token and retries. */
  async function api(path, opts) {
    opts = opts || {};
    for (let attempt = 0; attempt < 5; attempt++) {
      const headers = { Accept: 'application/json' };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = 'Bearer ' + token;
      if (opts.etag) headers['If-None-Match'] = opts.etag;
      const r = await fetch(path, { method: opts.method || 'GET', headers, cache: 'no-store' });
      if (r.status === 401) {
        const now = sessionStorage.getItem(TOKEN_KEY);
        if (now && now !== token) continue; // a newer token was entered meanwhile: retry with it
        sessionStorage.removeItem(TOKEN_KEY);
        await askToken(token ? 'That token was not accepted.' : '');
        continue;
      }
      let json = null;
      if (r.status !== 304 && r.status !== 204) {
        try { json = await r.json(); } catch (e) { json = null; }
      }
      return { status: r.status, etag: r.headers.get('ETag'), json };
    }
    throw new Error('no accepted token');
  }

  function apiError(ans) {
    const e = ans.json && ans.json.error;
    return 'HTTP ' + ans.status + (e ? ': ' + e.message : '');
  }

  // ------------------------------------------------------------------ charts

  /*
   * Draws series on a canvas: opts.series = [{label, color, values: [[x, y], ...], kind: 'line'|'bar'}],
   * opts.unit for the y axis, opts.xLabel. Sets data-points to the number of points drawn (what
   * the browser test reads).
   */
  function drawChart(canvas, opts) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 400;
    const h = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 52, r: 12, t: 12, b: 26 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    let xmin = Infinity, xmax = -Infinity, ymax = 0, count = 0;
    for (const s of opts.series) {
      for (const [x, y] of s.values) {
        if (y === null || y === undefined) continue;
        xmin = Math.min(xmin, x); xmax = Math.max(xmax, x); ymax = Math.max(ymax, y); count++;
      }
    }
    canvas.setAttribute('data-points', String(count));
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#6b7280';
    ctx.strokeStyle = '#e5e7eb';
    ctx.lineWidth = 1;
    if (!count) {
      ctx.textAlign = 'center';
      ctx.fillText(opts.empty || 'waiting for data…', w / 2, h / 2);
      return;
    }
    if (opts.xmin !== undefined) xmin = Math.min(xmin, opts.xmin);
    if (xmax === xmin) xmax = xmin + 1;
    let ystep = niceStep125((ymax || 1) / 4);
    if (opts.integer) ystep = Math.max(1, ystep);
    const yTop = Math.max(ystep, Math.ceil(ymax / ystep - 1e-9) * ystep);
    const e10 = Math.floor(Math.log10(ystep));
    const ydec = Math.max(0, Math.min(3, -e10 + (Math.abs(ystep / Math.pow(10, e10) - 2.5) < 1e-9 ? 1 : 0)));
    const X = (x) => pad.l + ((x - xmin) / (xmax - xmin)) * pw;
    const Y = (y) => pad.t + ph - (y / yTop) * ph;
    // Grid and y labels.
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let v = 0; v <= yTop + ystep / 2; v += ystep) {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(pad.l + pw, y); ctx.stroke();
      ctx.fillText(fmtNum(v, ydec) + (opts.unit ? ' ' + opts.unit : ''), pad.l - 6, y);
    }
    if (ymax === 0 && opts.zeroNote) {
      ctx.textAlign = 'center';
      ctx.fillStyle = '#10b981';
      ctx.fillText(opts.zeroNote, pad.l + pw / 2, pad.t + ph / 2);
      ctx.fillStyle = '#6b7280';
    }
    // x labels: about 6 ticks.
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const step = Math.max(1, niceStep((xmax - xmin) / 6));
    for (let x = Math.ceil(xmin / step) * step; x <= xmax; x += step) {
      ctx.fillText(opts.xFormat ? opts.xFormat(x) : String(x) + (opts.xUnit || ''), X(x), pad.t + ph + 7);
    }
    for (const s of opts.series) {
      const pts = s.values.filter((p) => p[1] !== null && p[1] !== undefined);
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      if (s.kind === 'bar') {
        const bw = Math.max(1, Math.min(14, (pw / Math.max(1, xmax - xmin + 1)) * 0.7));
        for (const [x, y] of pts) ctx.fillRect(X(x) - bw / 2, Y(y), bw, pad.t + ph - Y(y));
        continue;
      }
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
      if (pts.length < 40) for (const [x, y] of pts) { ctx.beginPath(); ctx.arc(X(x), Y(y), 2.2, 0, 2 * Math.PI); ctx.fill(); }
      if (s.fill) {
        ctx.globalAlpha = 0.08;
        ctx.beginPath();
        ctx.moveTo(X(pts[0][0]), pad.t + ph);
        pts.forEach(([x, y]) => ctx.lineTo(X(x), Y(y)));
        ctx.lineTo(X(pts[pts.length - 1][0]), pad.t + ph);
        ctx.fill();
        ctx.globalAlpha = 1;
      }
    }
    ctx.strokeStyle = '#9ca3af';
    ctx.beginPath(); ctx.moveTo(pad.l + 0.5, pad.t); ctx.lineTo(pad.l + 0.5, pad.t + ph + 0.5); ctx.lineTo(pad.l + pw, pad.t + ph + 0.5); ctx.stroke();
  }

  function niceStep125(v) {
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v - 1e-12) return m * e;
    return 10 * e;
  }

  function niceStep(v) {
    if (v <= 1) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * e >= v) return m * e;
    return 10 * e;
  }

  function legend(items) {
    return el('div', { class: 'legend' }, items.map(([label, color]) =>
      el('span', {}, [el('i', { class: 'swatch', 'data-color': color }), label])));
  }

  // Swatch colours are set through the CSSOM (allowed by the CSP), not style attributes.
  function paintSwatches(root) {
    root.querySelectorAll('i.swatch').forEach((i) => { i.style.background = i.getAttribute('data-color'); });
  }

  // ------------------------------------------------------------------ run list

  function viewList(params) {
    document.title = 'Runs · loadtestd';
    const state = { kind: params.get('kind') || '', status: params.get('status') || '', runs: [], cursor: null, shown: 50 };
    let timer = null, stopped = false;
    const body = el('tbody');
    const moreBtn = el('button', { type: 'button', class: 'hidden', text: 'More', onclick: () => load(true) });
    const info = el('span', { class: 'muted' });
    const err = el('div');
    const select = (name, values) => {
      const s = el('select', { 'aria-label': name, onchange: () => {
        state[name] = s.value;
        const q = new URLSearchParams();
        if (state.kind) q.set('kind', state.kind);
        if (state.status) q.set('status', state.status);
        const h = '#/' + (q.toString() ? '?' + q : '');
        if (location.hash !== h) history.replaceState(null, '', h);
        state.runs = []; state.shown = 50; load(false);
      } }, [el('option', { value: '', text: 'all ' + (name === 'kind' ? 'kinds' : 'statuses') })].concat(values.map((v) => el('option', { value: v, text: v }))));
      s.value = state[name];
      return s;
    };
    clear(main).appendChild(el('div', { class: 'page' }, [
      el('div', { class: 'page-head' }, [el('h1', { text: 'Runs' }), el('span', { class: 'spacer' }),
        el('label', { class: 'filter' }, ['Kind ', select('kind', KINDS)]),
        el('label', { class: 'filter' }, ['Status ', select('status', STATUSES)])]),
      err,
      el('div', { class: 'card flush' }, [el('table', { class: 'runs', id: 'runs-table' }, [
        el('thead', {}, el('tr', {}, ['Status', 'Run', 'Kind', 'Verdict', 'Summary', 'Started', 'Duration'].map((t) => el('th', { text: t })))),
        body])]),
      el('div', { class: 'list-foot' }, [info, el('span', { class: 'spacer' }), moreBtn]),
    ]));

    function row(r) {
      const href = '#/runs/' + encodeURIComponent(r.id);
      return el('tr', { 'data-run-id': r.id, 'data-status': r.status, class: 'clickable', onclick: (e) => { if (e.target.tagName !== 'A') location.hash = href; } }, [
        el('td', {}, statusBadge(r.status)),
        el('td', {}, [el('a', { href, class: 'run-name', text: r.name || r.id }), r.name ? el('div', { class: 'mono muted small', text: r.id }) : null]),
        el('td', { text: r.kind }),
        el('td', {}, verdictPill(r.verdict)),
        el('td', { class: 'summary', text: (r.verdict && r.verdict.summary) || '' }),
        el('td', { title: fmtTime(r.started_at || r.created_at), text: fmtAgo(r.started_at || r.created_at) }),
        el('td', { text: fmtDuration(r) }),
      ]);
    }

    async function load(more) {
      clearTimeout(timer);
      const q = new URLSearchParams();
      if (state.kind) q.set('kind', state.kind);
      if (state.status) q.set('status', state.status);
      if (more && state.cursor) { q.set('cursor', state.cursor); q.set('limit', '50'); }
      else q.set('limit', String(Math.min(1000, state.shown)));
      try {
        const ans = await api('/v1/runs?' + q);
        if (stopped) return;
        if (ans.status !== 200) { clear(err).appendChild(errorBox('Cannot list runs: ' + apiError(ans))); }
        else {
          clear(err);
          state.runs = more ? state.runs.concat(ans.json.runs) : ans.json.runs;
          state.shown = Math.max(50, state.runs.length);
          state.cursor = ans.json.next_cursor;
          clear(body);
          state.runs.forEach((r) => body.appendChild(row(r)));
          if (!state.runs.length) body.appendChild(el('tr', {}, el('td', { colspan: 7, class: 'empty', text: 'No runs yet. Submit one with POST /v1/runs or the loadtest CLI.' })));
          moreBtn.classList.toggle('hidden', !state.cursor);
          info.textContent = state.runs.length + ' run' + (state.runs.length === 1 ? '' : 's') + ' shown · refreshed ' + new Date().toLocaleTimeString('en-GB');
        }
      } catch (e) {
        if (!stopped) clear(err).appendChild(errorBox('Cannot reach loadtestd: ' + e.message));
      }
      if (!stopped) timer = setTimeout(() => load(false), LIST_REFRESH_MS);
    }
    load(false);
    return () => { stopped = true; clearTimeout(timer); };
  }

  // ------------------------------------------------------------------ run view

  const PCT_KEYS = ['min', 'mean', 'p50', 'p90', 'p95', 'p99', 'p999', 'max'];
  const PCT_LABEL = { min: 'min', mean: 'mean', p50: 'p50', p90: 'p90', p95: 'p95', p99: 'p99', p999: 'p99.9', max: 'max' };

  function checksTable(verdict, status) {
    if (!verdict) return el('p', { class: 'muted', text: FINAL.includes(status) ? 'No verdict: the run ended ' + status + '.' : 'No verdict yet.' });
    const rows = (verdict.checks || []).map((c) => el('tr', { 'data-check': c.name, class: c.pass ? '' : 'bad' }, [
      el('td', { class: 'mono', text: c.name }),
      el('td', { class: 'num', 'data-role': 'observed', 'data-value': JSON.stringify(c.observed), text: fmtNum(c.observed) }),
      el('td', { class: 'center', text: c.op }),
      el('td', { class: 'num', 'data-role': 'threshold', 'data-value': JSON.stringify(c.threshold), text: fmtNum(c.threshold) }),
      el('td', {}, el('span', { class: 'pill ' + (c.pass ? 'pass' : 'fail'), text: c.pass ? 'pass' : 'fail' })),
    ]));
    return el('table', { class: 'data', id: 'checks-table' }, [
      el('thead', {}, el('tr', {}, ['Check', 'Observed', '', 'Threshold', 'Result'].map((t, i) => el('th', { class: i === 1 || i === 3 ? 'num' : '', text: t })))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: 5, class: 'empty', text: 'no checks' })))]);
  }

  function percentileTable(result) {
    const lat = result.latency_ms || {}, svc = result.service_time_ms;
    return el('table', { class: 'data', id: 'percentile-table' }, [
      el('thead', {}, el('tr', {}, [el('th', { text: 'Percentile' }), el('th', { class: 'num', text: 'Latency (from due time)' }), svc ? el('th', { class: 'num', text: 'Service time (from send)' }) : null])),
      el('tbody', {}, PCT_KEYS.map((k) => el('tr', { 'data-pct': k }, [
        el('td', { text: PCT_LABEL[k] }),
        el('td', { class: 'num', 'data-role': 'latency', 'data-value': lat[k] === undefined || lat[k] === null ? '' : String(lat[k]), text: fmtMs(lat[k]) }),
        svc ? el('td', { class: 'num', 'data-role': 'service', 'data-value': svc[k] === undefined || svc[k] === null ? '' : String(svc[k]), text: fmtMs(svc[k]) }) : null,
      ])))]);
  }

  function countsTable(obj, what) {
    const keys = Object.keys(obj || {});
    if (!keys.length) return el('p', { class: 'muted', text: 'none' });
    return el('table', { class: 'data compact' }, [el('thead', {}, el('tr', {}, [el('th', { text: what }), el('th', { class: 'num', text: 'count' })])),
      el('tbody', {}, keys.map((k) => el('tr', {}, [el('td', { class: 'mono', text: k }), el('td', { class: 'num', text: fmtNum(obj[k], 0) })])))]);
  }

  function capacityResult(res) {
    const hist = el('canvas', { class: 'chart', id: 'histogram-chart' });
    const out = [
      card('Summary', [kv([
        ['Requests', fmtNum(res.requests, 0)],
        ['Duration', fmtNum(res.duration_s, 1) + ' s'],
        ['Throughput', fmtNum(res.achieved_rps, 1) + ' req/s'],
        ['Error rate', fmtPct(res.error_rate)],
      ]), el('div', { class: 'two' }, [countsTable(res.status_codes, 'HTTP status'), countsTable(res.errors, 'error')])]),
      card('Latency percentiles', [percentileTable(res)]),
    ];
    if (Array.isArray(res.latency_histogram_ms) && res.latency_histogram_ms.length) {
      out.push(card('Latency distribution', [hist, el('p', { class: 'muted small', text: 'requests per latency bucket (upper bound, ms)' })], { class: 'card wide' }));
      requestAnimationFrame(() => drawChart(hist, { integer: true, series: [{ label: 'requests', color: '#6366f1', kind: 'bar', values: res.latency_histogram_ms.map((p, i) => [i, p[1]]) }],
        xFormat: (i) => { const p = res.latency_histogram_ms[i]; return p ? fmtNum(p[0]) : ''; } }));
    }
    return out;
  }

  function ratelimitResult(res) {
    const b = res.burst || {}, r = res.realistic || {};
    return [
      card('Burst', [kv([
        ['Accepted before first 429', fmtNum(b.accepted_before_first_429, 0)],
        ['Requests', fmtNum(b.requests, 0)],
        ['First 429 after', fmtMs(b.first_429_ms)],
        ['Retry-After', b.retry_after_s === null || b.retry_after_s === undefined ? '–' : fmtNum(b.retry_after_s) + ' s'],
        ['Refill', b.refill_per_s === null || b.refill_per_s === undefined ? '–' : fmtNum(b.refill_per_s) + ' /s'],
      ]), b.limit_headers && Object.keys(b.limit_headers).length ? countsTable(b.limit_headers, 'limit header') : null]),
      card('Realistic agents', [kv([
        ['Agents', fmtNum(r.agents, 0)], ['Requests', fmtNum(r.requests, 0)], ['Succeeded', fmtNum(r.succeeded, 0)],
        ['Rate limited', fmtNum(r.rate_limited, 0)], ['Errors', fmtNum(r.errors, 0)],
      ])]),
    ];
  }

  function generateResult(res) {
    const ph = res.phases || {};
    const total = (ph.schema_s || 0) + (ph.insert_s || 0) + (ph.index_s || 0);
    const bar = el('div', { class: 'phasebar' });
    [['schema', ph.schema_s, '#94a3b8'], ['insert', ph.insert_s, '#6366f1'], ['index', ph.index_s, '#f59e0b']].forEach(([n, s, c]) => {
      if (!s || !total) return;
      const seg = el('span', { title: n + ' ' + fmtNum(s) + ' s' });
      seg.style.width = (100 * s / total) + '%';
      seg.style.background = c;
      bar.appendChild(seg);
    });
    return [
      card('Rows', [kv([
        ['Rows inserted', fmtNum(res.rows_inserted, 0)], ['Rows/s', fmtNum(res.rows_per_s, 0)], ['Bytes sent', fmtBytes(res.bytes)],
        ['Index', res.index && res.index.name ? res.index.name + (res.index.valid ? ' (valid)' : ' (not valid)') : '–'],
      ])]),
      card('Phases', [bar, legend([['schema ' + fmtNum(ph.schema_s) + ' s', '#94a3b8'], ['insert ' + fmtNum(ph.insert_s) + ' s', '#6366f1'], ['index ' + fmtNum(ph.index_s) + ' s', '#f59e0b']])]),
    ];
  }

  function viewRun(id) {
    let stopped = false, timer = null, runEtag = null, tsEtag = null, since = 0, run = null, lastSig = '';
    const points = [];
    const head = el('div'), progress = el('div'), verdict = el('div'), details = el('div'), err = el('div');
    const charts = {
      rps: el('canvas', { class: 'chart', id: 'chart-rps' }),
      latency: el('canvas', { class: 'chart', id: 'chart-latency' }),
      errors: el('canvas', { class: 'chart', id: 'chart-errors' }),
    };
    const rpsCard = card('Throughput', [charts.rps, legend([['requests/s', '#6366f1']])]);
    const latCard = card('Latency', [charts.latency, legend([['p50', '#10b981'], ['p99', '#f59e0b']])]);
    const errCard = card('Errors', [charts.errors, legend([['errors/s', '#ef4444']])]);
    const chartCards = el('div', { class: 'grid3', id: 'live-charts' }, [rpsCard, latCard, errCard]);
    let generateCharts = false;
    paintSwatches(chartCards);
    verdict.className = 'stack';
    clear(main).appendChild(el('div', { class: 'page' }, [
      el('a', { href: '#/', class: 'back', text: '← All runs' }), err, head, progress, verdict, chartCards, details]));

    function drawCharts() {
      const xmin = 1;
      const empty = run && FINAL.includes(run.status) ? 'no points recorded' : 'waiting for data…';
      if (run && run.kind === 'generate') {
        // Generate points carry rows per second, not requests and latencies.
        if (!generateCharts) {
          generateCharts = true;
          rpsCard.querySelector('h3').textContent = 'Rows inserted per second';
          rpsCard.querySelector('.legend').replaceWith(legend([['rows/s', '#6366f1']]));
          paintSwatches(rpsCard);
          latCard.classList.add('hidden');
          errCard.classList.add('hidden');
          chartCards.className = 'grid1';
        }
        drawChart(charts.rps, { xmin, xUnit: 's', empty, series: [{ color: '#6366f1', fill: true, values: points.map((p) => [p.t, p.rows_per_s]) }] });
        return;
      }
      drawChart(charts.rps, { xmin, xUnit: 's', empty, series: [{ color: '#6366f1', fill: true, values: points.map((p) => [p.t, p.rps !== undefined ? p.rps : p.requests]) }] });
      drawChart(charts.latency, { xmin, xUnit: 's', unit: 'ms', empty, series: [
        { color: '#10b981', values: points.map((p) => [p.t, p.p50_ms]) },
        { color: '#f59e0b', values: points.map((p) => [p.t, p.p99_ms]) }] });
      drawChart(charts.errors, { xmin, xUnit: 's', integer: true, empty, zeroNote: 'no errors', series: [{ color: '#ef4444', kind: 'bar', values: points.map((p) => [p.t, p.errors]) }] });
    }

    function renderHead() {
      const live = !FINAL.includes(run.status);
      const actions = el('div', { class: 'actions' }, [
        live ? el('button', { type: 'button', class: 'danger', text: 'Cancel run', onclick: cancelRun }) : null,
        el('a', { class: 'button', href: '#/runs/' + encodeURIComponent(run.id) + '/compare?base=last_passed', text: 'Compare with last passed' }),
      ]);
      clear(head).appendChild(el('div', { class: 'page-head' }, [
        el('div', {}, [el('h1', {}, [run.name || run.id, ' ', statusBadge(run.status)]),
          el('div', { class: 'muted small' }, [el('span', { class: 'mono', text: run.id }), ' · ' + run.kind + ' · created ' + fmtTime(run.created_at) + (run.started_at ? ' · ran ' + fmtDuration(run) : '')])]),
        el('span', { class: 'spacer' }), actions]));
      const f = Math.max(0, Math.min(1, (run.progress && run.progress.fraction) || 0));
      const fill = el('div', { class: 'fill ' + run.status });
      fill.style.width = (f * 100).toFixed(1) + '%';
      const phase = run.progress && run.progress.phase ? ' · ' + run.progress.phase : '';
      clear(progress).appendChild(el('div', { class: 'progress-row' }, [
        el('div', { class: 'progress', id: 'progress', 'data-fraction': String(f), role: 'progressbar', 'aria-valuenow': String(Math.round(f * 100)), 'aria-valuemin': '0', 'aria-valuemax': '100' }, fill),
        el('span', { class: 'muted small', text: Math.round(f * 100) + '%' + phase + (live ? ' · live' : '') })]));
    }

    function renderBody() {
      const v = run.verdict;
      clear(verdict);
      if (run.error) verdict.appendChild(errorBox(run.error.code + ': ' + run.error.message));
      verdict.appendChild(card('Verdict', [
        v ? el('div', { class: 'verdict-line' }, [verdictPill(v), el('span', { id: 'verdict-summary', text: ' ' + (v.summary || '') })]) : null,
        checksTable(v, run.status)], { id: 'verdict-card' }));
      const res = run.result || {};
      let parts = [];
      if (run.kind === 'capacity' && res.latency_ms) parts = capacityResult(res);
      else if (run.kind === 'ratelimit' && (res.burst || res.realistic)) parts = ratelimitResult(res);
      else if (run.kind === 'generate' && res.rows_inserted !== undefined) parts = generateResult(res);
      const spec = el('details', { class: 'card' }, [el('summary', { text: 'Spec (as accepted, secrets masked)' }), el('pre', { class: 'json', text: JSON.stringify(run.spec, null, 2) })]);
      clear(details).appendChild(el('div', { class: 'grid2' }, parts.concat([spec])));
      paintSwatches(details);
    }

    async function cancelRun() {
      try {
        const ans = await api('/v1/runs/' + encodeURIComponent(id) + '/cancel', { method: 'POST' });
        if (ans.status !== 202) clear(err).appendChild(errorBox('Cancel refused: ' + apiError(ans)));
      } catch (e) { clear(err).appendChild(errorBox(e.message)); }
      poll();
    }

    async function pollRun() {
      const ans = await api('/v1/runs/' + encodeURIComponent(id), { etag: runEtag });
      if (ans.status === 304) return;
      if (ans.status !== 200) throw new Error(ans.status === 404 ? 'No run with id ' + id + '.' : apiError(ans));
      runEtag = ans.etag;
      run = ans.json;
      document.title = (run.name || run.id) + ' · ' + run.status + ' · loadtestd';
      renderHead();
      // The result grows every second while running; redraw the body only when it changes shape.
      const sig = run.status + JSON.stringify(run.verdict) + JSON.stringify(run.result);
      if (sig !== lastSig) { lastSig = sig; renderBody(); drawCharts(); }
    }

    async function pollPoints() {
      for (let page = 0; page < 50; page++) {
        const ans = await api('/v1/runs/' + encodeURIComponent(id) + '/timeseries?since=' + since, { etag: tsEtag });
        if (ans.status === 304) return;
        if (ans.status !== 200) throw new Error('timeseries: ' + apiError(ans));
        tsEtag = ans.etag;
        const pts = ans.json.points || [];
        for (const p of pts) { points.push(p); since = Math.max(since, p.t); }
        if (pts.length < 3600) break; // a full page: there may be more
        tsEtag = null;
      }
      drawCharts();
    }

    async function poll() {
      clearTimeout(timer);
      try {
        await pollRun();
        if (stopped) return;
        await pollPoints();
        clear(err);
      } catch (e) {
        if (!stopped) clear(err).appendChild(errorBox(e.message));
      }
      if (stopped) return;
      if (run && FINAL.includes(run.status)) {
        // One more read after the end for the last points, then stop polling.
        if (!run.__done) { run.__done = true; timer = setTimeout(poll, RUN_POLL_MS); }
        return;
      }
      timer = setTimeout(poll, RUN_POLL_MS);
    }

    drawCharts();
    poll();
    const onResize = () => drawCharts();
    window.addEventListener('resize', onResize);
    return () => { stopped = true; clearTimeout(timer); window.removeEventListener('resize', onResize); };
  }

  // ------------------------------------------------------------------ compare view

  function viewCompare(id, params) {
    document.title = 'Compare ' + id + ' · loadtestd';
    let stopped = false;
    const base = params.get('base') || 'last_passed';
    const body = el('div');
    const input = el('input', { type: 'text', value: base, 'aria-label': 'baseline', spellcheck: 'false' });
    const go = () => { location.hash = '#/runs/' + encodeURIComponent(id) + '/compare?base=' + encodeURIComponent(input.value.trim() || 'last_passed'); };
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
    clear(main).appendChild(el('div', { class: 'page' }, [
      el('a', { href: '#/runs/' + encodeURIComponent(id), class: 'back', text: '← Run ' + id }),
      el('div', { class: 'page-head' }, [el('h1', { text: 'Compare' }), el('span', { class: 'spacer' }),
        el('label', { class: 'filter' }, ['Baseline ', input]), el('button', { type: 'button', text: 'Compare', onclick: go })]),
      body]));

    function side(r, label) {
      return card(label, [el('div', {}, [el('a', { href: '#/runs/' + encodeURIComponent(r.id), text: r.name || r.id }), ' ', statusBadge(r.status)]),
        el('div', { class: 'mono muted small', text: r.id + (r.preset ? ' · preset ' + r.preset : '') })]);
    }

    (async () => {
      try {
        const ans = await api('/v1/runs/' + encodeURIComponent(id) + '/compare?base=' + encodeURIComponent(base));
        if (stopped) return;
        if (ans.status === 404) {
          const msg = ans.json && ans.json.error ? ans.json.error.message : '';
          clear(body).appendChild(el('div', { class: 'notice', id: 'no-baseline' }, [el('strong', { text: 'No baseline. ' }), msg]));
          return;
        }
        if (ans.status !== 200) { clear(body).appendChild(errorBox('Cannot compare: ' + apiError(ans))); return; }
        const c = ans.json;
        const rows = (c.metrics || []).map((m) => el('tr', { class: m.regressed ? 'bad' : '', 'data-metric': m.name, 'data-regressed': String(!!m.regressed) }, [
          el('td', { class: 'mono', text: m.name }),
          el('td', { class: 'num', text: fmtNum(m.base) }),
          el('td', { class: 'num', text: fmtNum(m.run) }),
          el('td', { class: 'num', text: (m.delta > 0 ? '+' : '') + fmtNum(m.delta) }),
          el('td', { class: 'num', text: m.delta_pct === null || m.delta_pct === undefined ? '–' : (m.delta_pct > 0 ? '+' : '') + fmtNum(m.delta_pct, 1) + '%' }),
          el('td', { class: 'muted', text: m.better + ' is better' }),
          el('td', {}, m.regressed ? el('span', { class: 'pill fail', text: 'regressed' }) : el('span', { class: 'pill pass', text: 'ok' })),
        ]));
        clear(body).append(el('div', { class: 'stack' }, [
          el('div', { class: 'grid2' }, [side(c.base, 'Baseline'), side(c.run, 'This run')]),
          card('Metrics', [
            el('div', { class: 'verdict-line' }, [el('span', { class: 'pill ' + (c.regression ? 'fail' : 'pass'), id: 'compare-verdict', text: c.regression ? 'REGRESSION' : 'NO REGRESSION' }),
              ' ' + (c.summary || '') + ' (max regression ' + fmtNum(c.max_regression_pct) + '%)']),
            el('table', { class: 'data', id: 'compare-table' }, [
              el('thead', {}, el('tr', {}, ['Metric', 'Baseline', 'This run', 'Δ', 'Δ %', '', ''].map((t, i) => el('th', { class: i >= 1 && i <= 4 ? 'num' : '', text: t })))),
              el('tbody', {}, rows)])])]));
      } catch (e) {
        if (!stopped) clear(body).appendChild(errorBox(e.message));
      }
    })();
    return () => { stopped = true; };
  }

  // ------------------------------------------------------------------ router

  function route() {
    if (stopView) stopView();
    stopView = null;
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    let m;
    if ((m = path.match(/^\/runs\/([A-Za-z0-9_-]+)\/compare$/))) stopView = viewCompare(m[1], params);
    else if ((m = path.match(/^\/runs\/([A-Za-z0-9_-]+)$/))) stopView = viewRun(m[1]);
    else stopView = viewList(params);
    window.scrollTo(0, 0);
  }

  function start() {
    document.getElementById('token-ok').addEventListener('click', submitToken);
    document.getElementById('token-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') submitToken(); });
    const signout = document.getElementById('signout');
    if (sessionStorage.getItem(TOKEN_KEY)) signout.classList.remove('hidden');
    signout.addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); signout.classList.add('hidden'); route(); });
    window.addEventListener('hashchange', route);
    route();
    api('/v1/version').then((a) => { if (a.status === 200) document.getElementById('version').textContent = 'v' + a.json.version; }).catch(() => {});
  }

  start();
})();
