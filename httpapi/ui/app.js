// kvs console. It lists the keys with /list, then follows /subscribe from
// the listing's revision + 1, so that the table stays exact while others
// write. After a disconnect it resumes from the revision after the last one
// it applied completely.
// Everything that comes from the server is rendered with textContent, never
// parsed as HTML.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const FEED_MAX = 100; // events kept in the feed pane
  const SHOW_MAX = 2000; // characters of a value shown in the table
  const FLASH_MS = 1600; // how long a changed row is highlighted (see app.css)
  const BACKOFF_MIN = 250; // ms before the first reconnect, doubled up to BACKOFF_MAX
  const BACKOFF_MAX = 8000;
  const REQUEST_MS = 20000; // a request that takes longer counts as failed
  // The server sends a progress event at least every 10 s; a feed that stays
  // silent much longer is dead even if the socket looks open.
  const idleMs = () => window.kvsConsoleIdleMs || 35000;

  // The table: key -> {tr, vcell, rcell, ecell, lease}, and the keys in
  // server order.
  const rows = new Map();
  // Leases: ID -> {until: performance.now() when it expires, granted}, as
  // the server last told (/list's TTLs, then /lease/list every
  // LEASE_POLL_MS: keep-alives renew leases without a change in the feed).
  const leases = new Map();
  const LEASE_POLL_MS = 5000;
  let keys = [];
  let prefix = '';
  let applied = 0; // every matching change up to this revision is in the table
  let listed = false; // the table holds a listing, so applied can be resumed from
  let lists = 0; // listings so far
  // The feed connection. gen numbers connection attempts: callbacks of an
  // older attempt find gen changed and do nothing.
  let gen = 0;
  let ws = null;
  let attempt = 0; // reconnects since the feed was last open
  let refused = 0; // handshakes in a row that failed while HTTP worked
  let timer = 0;
  let editing = null; // {key, rev} while the form edits a row

  class HTTPError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- JSON with exact values ----
  // JSON.parse would round big numbers and respell others, so values are
  // kept as the text the server sent. members splits the text of a JSON
  // object into [name, raw value text] pairs.
  function members(text) {
    const out = [];
    let i = skip(text, text.indexOf('{') + 1);
    while (i < text.length && text[i] !== '}') {
      let j = endString(text, i);
      const name = JSON.parse(text.slice(i, j));
      i = skip(text, skip(text, j) + 1); // past the colon
      j = endValue(text, i);
      out.push([name, text.slice(i, j)]);
      i = skip(text, j);
      if (text[i] === ',') i = skip(text, i + 1);
    }
    return out;
  }
  function fields(text) {
    return Object.fromEntries(members(text));
  }
  // elements splits the text of a JSON array into the raw texts of its
  // elements.
  function elements(text) {
    const out = [];
    let i = skip(text, text.indexOf('[') + 1);
    while (i < text.length && text[i] !== ']') {
      const j = endValue(text, i);
      out.push(text.slice(i, j));
      i = skip(text, j);
      if (text[i] === ',') i = skip(text, i + 1);
    }
    return out;
  }
  function skip(s, i) {
    while (s[i] === ' ' || s[i] === '\n' || s[i] === '\r' || s[i] === '\t') i++;
    return i;
  }
  // endString returns the index after the string that starts at s[i].
  function endString(s, i) {
    for (i++; i < s.length; i++) {
      if (s[i] === '\\') i++;
      else if (s[i] === '"') return i + 1;
    }
    throw new SyntaxError('unterminated string');
  }
  // endValue returns the index after the JSON value that starts at s[i].
  function endValue(s, i) {
    if (s[i] === '"') return endString(s, i);
    let depth = 0;
    for (; i < s.length; i++) {
      const c = s[i];
      if (c === '"') {
        i = endString(s, i) - 1;
      } else if (c === '{' || c === '[') {
        depth++;
      } else if (c === '}' || c === ']') {
        if (depth === 0) return i;
        if (--depth === 0) return i + 1;
      } else if (depth === 0 && (c === ',' || c === ' ' || c === '\n' || c === '\r' || c === '\t')) {
        return i;
      }
    }
    return i;
  }
  const isString = (raw) => raw[0] === '"';
  // shown is the text a value is shown as: a string without its quotes,
  // anything else as its JSON.
  function shown(raw) {
    const s = isString(raw) ? JSON.parse(raw) : raw;
    return s.length > SHOW_MAX ? s.slice(0, SHOW_MAX) + '…' : s;
  }

  // cmp orders keys by code point, as the server does (bytes of UTF-8).
  function cmp(a, b) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) {
      let x = a.charCodeAt(i);
      let y = b.charCodeAt(i);
      if (x === y) continue;
      // Surrogates (code points above U+FFFF) sort after U+E000..U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x >= 0xd800 ? x + 0x2000 : x;
      y = y >= 0xe000 ? y - 0x800 : y >= 0xd800 ? y + 0x2000 : y;
      return x - y;
    }
    return a.length - b.length;
  }
  function position(key) {
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp(keys[mid], key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // ---- HTTP ----
  async function errorText(resp) {
    try {
      const f = fields(await resp.text());
      if (f.error) return JSON.parse(f.error);
    } catch (e) {
      // not a JSON error body
    }
    return 'HTTP ' + resp.status;
  }

  // api sends a request and returns the response when it is a success. It
  // throws a TypeError when the server is unreachable, and an HTTPError
  // otherwise; 401 also opens the login form.
  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', cache: 'no-store', signal: AbortSignal.timeout(REQUEST_MS) };
    if (body !== undefined) {
      init.body = body;
      init.headers = { 'Content-Type': 'application/json' };
    }
    const resp = await fetch(path, init);
    if (resp.ok) {
      // The server names the expiry of the session that authorized this.
      if (resp.headers.get('Kvs-Session-Expires')) $('logout').hidden = false;
      return resp;
    }
    if (resp.status === 401) showLogin();
    throw new HTTPError(resp.status, await errorText(resp));
  }

  const query = () => (prefix ? '?prefix=' + encodeURIComponent(prefix) : '');

  // ---- the table ----
  function setRev(rev) {
    applied = rev;
    $('rev').textContent = String(rev);
    document.body.dataset.rev = String(rev);
  }
  function setCount() {
    $('count').textContent = keys.length === 1 ? '1 key' : keys.length + ' keys';
    $('empty').hidden = keys.length > 0;
  }
  function fillValue(td, raw) {
    td.textContent = '';
    if (isString(raw)) {
      td.textContent = shown(raw);
    } else {
      const span = document.createElement('span');
      span.className = 'json';
      span.textContent = shown(raw);
      td.append(span);
    }
  }
  function makeRow(key, raw, rev, lease) {
    const tr = document.createElement('tr');
    tr.dataset.key = key;
    const kcell = tr.insertCell();
    kcell.textContent = key;
    const vcell = tr.insertCell();
    fillValue(vcell, raw);
    const rcell = tr.insertCell();
    rcell.className = 'rev';
    const ecell = tr.insertCell();
    ecell.className = 'exp';
    const row = { tr, vcell, rcell, ecell, lease };
    setRowRev(row, rev);
    showExpiry(row);
    if (editing && editing.key === key) tr.classList.add('selected');
    rows.set(key, row);
    return row;
  }
  // setRowRev shows the revision of the row's last change.
  function setRowRev(row, rev) {
    row.rcell.textContent = String(rev);
  }
  // flash highlights a changed row for FLASH_MS; the timer ends it even
  // where the page is not painted and the animation does not advance.
  function flash(row) {
    const tr = row.tr;
    clearTimeout(row.flash);
    tr.classList.remove('flash');
    void tr.offsetWidth; // restart the animation
    tr.classList.add('flash');
    row.flash = setTimeout(() => tr.classList.remove('flash'), FLASH_MS);
  }
  function upsert(key, raw, rev, lease) {
    let row = rows.get(key);
    if (row) {
      fillValue(row.vcell, raw);
      setRowRev(row, rev);
      row.lease = lease;
      showExpiry(row);
    } else {
      row = makeRow(key, raw, rev, lease);
      const i = position(key);
      const next = i < keys.length ? rows.get(keys[i]).tr : null;
      $('rows').insertBefore(row.tr, next);
      keys.splice(i, 0, key);
      setCount();
    }
    flash(row);
  }
  function remove(key) {
    const row = rows.get(key);
    if (!row) return;
    clearTimeout(row.flash);
    row.tr.remove();
    rows.delete(key);
    keys.splice(position(key), 1);
    setCount();
  }

  // list replaces the table with a listing: /list answers
  // {"Revision":R,"Entries":[{"Key","Value","Revision",...},...]}, sorted by
  // key. It returns false when a newer connection attempt took over
  // meanwhile.
  async function list(g) {
    const resp = await api('GET', '/list' + query());
    const text = await resp.text();
    if (g !== gen) return false;
    const top = fields(text);
    const rev = Number(top.Revision);
    const entries = elements(top.Entries).map(fields); // in the server's order, which is sorted
    rows.clear();
    const now = performance.now();
    for (const e of entries) {
      if (e.Lease !== undefined && e.TTL !== undefined) setLease(Number(e.Lease), now + duration(JSON.parse(e.TTL)));
    }
    const frag = document.createDocumentFragment();
    for (const e of entries) {
      const row = makeRow(JSON.parse(e.Key), e.Value, Number(e.Revision), e.Lease === undefined ? 0 : Number(e.Lease));
      frag.append(row.tr);
    }
    keys = entries.map((e) => JSON.parse(e.Key));
    $('rows').replaceChildren(frag);
    setCount();
    setRev(rev);
    listed = true;
    $('backup').hidden = false; // the server let us list: it serves backups too
    lists++;
    document.body.dataset.lists = String(lists);
    note('listed ' + keys.length + (keys.length === 1 ? ' key' : ' keys') + ' at revision ' + rev);
    return true;
  }

  // ---- leases: which keys expire, and when ----
  // duration reads Go duration text ("1h2m3.5s", "250ms", "0s") in ms.
  function duration(text) {
    const units = { h: 3600000, m: 60000, s: 1000, ms: 1, us: 0.001, 'µs': 0.001, ns: 0.000001 };
    let ms = 0;
    for (const [, n, u] of text.matchAll(/([0-9.]+)(h|ms|m|s|us|µs|ns)/g)) ms += Number(n) * units[u];
    return ms;
  }
  // left formats the time left on a lease: "9 s", "4 min 10 s", "2 h 5 min".
  function left(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }
  function setLease(id, until) {
    leases.set(id, { until });
  }
  // showExpiry shows the row's lease and the time left on it.
  function showExpiry(row) {
    const c = row.ecell;
    if (!row.lease) {
      c.textContent = '';
      c.title = '';
      delete row.tr.dataset.lease;
      return;
    }
    row.tr.dataset.lease = String(row.lease);
    const l = leases.get(row.lease);
    const text = l === undefined ? '…' : l.until - performance.now() > 0 ? 'in ' + left(l.until - performance.now()) : 'expiring';
    c.textContent = text;
    c.title = 'lease ' + row.lease + ': the key is deleted when it expires (unless kept alive) or is revoked';
  }
  function showExpiries() {
    for (const row of rows.values()) if (row.lease) showExpiry(row);
  }
  setInterval(showExpiries, 1000);
  // pollLeases reads the time left on every lease: keep-alives renew them
  // without a change in the feed.
  async function pollLeases() {
    let any = false;
    for (const row of rows.values()) any = any || row.lease !== 0;
    if (!any || !listed) return;
    try {
      const resp = await api('GET', '/lease/list');
      const text = await resp.text();
      const now = performance.now();
      const seen = new Set();
      for (const l of elements(fields(text).Leases).map(fields)) {
        setLease(Number(l.ID), now + duration(JSON.parse(l.TTL)));
        seen.add(Number(l.ID));
      }
      for (const id of leases.keys()) if (!seen.has(id)) setLease(id, now); // ended: its deletes follow
      showExpiries();
    } catch (e) {
      // The feed reports the connection's state; try again next time.
    }
  }
  setInterval(pollLeases, LEASE_POLL_MS);

  // ---- the feed pane ----
  function feedItem(li) {
    const feed = $('feed');
    feed.prepend(li);
    while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
  }
  function span(cls, text) {
    const s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    return s;
  }
  function feedEvent(type, key, raw, rev, reason) {
    const li = document.createElement('li');
    li.append(span('r', String(rev)), span('t ' + type, type), span('k', key));
    if (raw !== undefined) li.append(span('v', shown(raw)));
    if (reason) li.append(span('why', reason)); // a lease's end: expired or revoked
    feedItem(li);
  }
  function note(text) {
    const li = document.createElement('li');
    li.className = 'note';
    li.textContent = text;
    feedItem(li);
  }

  // ---- the connection ----
  function setState(state, text, title) {
    document.body.dataset.state = state;
    $('state').textContent = text;
    $('state').title = title || '';
  }

  function closeSocket() {
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000);
    } catch (e) {
      // already closed
    }
    ws = null;
  }

  // connect lists (when relist is set or nothing is listed yet) or checks
  // that the server has not gone back in time, then opens the feed from the
  // revision after the last one applied.
  function connect(relist) {
    clearTimeout(timer);
    closeSocket();
    const g = ++gen;
    setState(attempt ? 'reconnecting' : 'connecting', attempt ? 'reconnecting…' : 'connecting…');
    prepare(g, relist).then(
      (ok) => {
        if (ok && g === gen) openSocket(g);
      },
      (err) => {
        if (g !== gen) return;
        if (err instanceof HTTPError && err.status === 401) {
          setState('login', 'login required');
        } else if (err instanceof HTTPError && err.status >= 400 && err.status < 500) {
          setState('offline', 'stopped', err.message);
          note('stopped: ' + err.message);
        } else {
          retry(err instanceof HTTPError ? err.message : 'server unreachable', relist || !listed);
        }
      },
    );
  }

  async function prepare(g, relist) {
    if (relist || !listed) return list(g);
    // A server whose revision is behind the table lost changes (it was
    // restarted without its data): resuming would skip its new ones.
    const resp = await api('HEAD', '/list' + query());
    if (g !== gen) return false;
    const rev = Number(resp.headers.get('Kvs-Revision'));
    if (rev < applied) {
      note('the server is at revision ' + rev + ', behind this page (' + applied +
        '): it lost changes, listing again');
      return list(g);
    }
    return true;
  }

  function openSocket(g) {
    const u = new URL('/subscribe', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (prefix) u.searchParams.set('prefix', prefix);
    u.searchParams.set('from', String(applied + 1));
    const sock = new WebSocket(u);
    ws = sock;
    let opened = false;
    sock.onopen = () => {
      if (g !== gen) return;
      opened = true;
      attempt = 0;
      refused = 0;
      lastMessage = Date.now();
      setState('live', 'live');
      note('following changes from revision ' + (applied + 1));
    };
    sock.onmessage = (e) => onMessage(g, e.data);
    sock.onclose = (e) => {
      if (g !== gen) return;
      ws = null;
      const why = e.code === 1006 ? 'connection lost' : 'closed ' + e.code + (e.reason ? ' (' + e.reason + ')' : '');
      if (e.code === 4410) {
        note(why + ': listing again');
        retry(why, true);
        return;
      }
      if (!opened && ++refused >= 2) {
        // The server answers HTTP but refuses the feed: most likely the
        // revision to resume from is no longer retained (410).
        refused = 0;
        note('the server refused the feed twice: listing again');
        retry('feed refused', true);
        return;
      }
      if (opened) note(why);
      retry(why, false);
    };
  }

  // onMessage applies one event. The events of one revision (a
  // transaction's) come one after the other, each but the last with
  // "More":true; the revision counts as applied after its last event, so a
  // feed resumed from applied + 1 delivers an interrupted revision whole.
  function onMessage(g, text) {
    if (g !== gen) return;
    lastMessage = Date.now();
    const f = fields(text);
    const type = JSON.parse(f.Type);
    const rev = Number(f.Revision);
    if (rev <= applied) return; // already in the table
    if (type === 'set' || type === 'delete') {
      const key = JSON.parse(f.Key);
      const lease = f.Lease === undefined ? 0 : Number(f.Lease);
      if (type === 'set') {
        upsert(key, f.Value, rev, lease);
        if (lease && !leases.has(lease)) pollLeases(); // a lease the page has not seen yet
      } else {
        remove(key);
      }
      feedEvent(type, key, f.Value, rev, f.Reason === undefined ? '' : JSON.parse(f.Reason));
    }
    if (f.More !== 'true') setRev(rev); // progress: nothing matching up to rev is missing
  }

  // The watchdog reconnects when the open feed has been silent too long.
  let lastMessage = 0;
  setInterval(() => {
    if (!ws || ws.readyState !== WebSocket.OPEN || Date.now() - lastMessage <= idleMs()) return;
    note('no message from the server for ' + Math.round((Date.now() - lastMessage) / 1000) + ' s: reconnecting');
    retry('feed silent', false);
  }, 1000);

  function retry(reason, relist) {
    closeSocket();
    gen++;
    const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    setState('reconnecting', 'reconnecting in ' + (delay / 1000).toFixed(1) + ' s', reason);
    clearTimeout(timer);
    timer = setTimeout(() => connect(relist), delay);
  }

  // ---- login ----
  function showLogin() {
    $('login').hidden = false;
    $('backup').hidden = true;
    $('token').focus();
  }
  async function login(ev) {
    ev.preventDefault();
    const msg = $('login-msg');
    msg.textContent = '';
    let resp;
    try {
      resp = await fetch('/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ Token: $('token').value }),
      });
    } catch (e) {
      msg.textContent = 'The server is unreachable.';
      return;
    }
    if (resp.ok) {
      $('token').value = '';
      $('login').hidden = true;
      $('logout').hidden = !resp.headers.get('Kvs-Session-Expires');
      attempt = 0;
      connect(!listed);
      return;
    }
    msg.textContent = resp.status === 401
      ? 'Wrong token: the server refused it (401). Use the token kvsd was started with (-token or KVS_TOKEN).'
      : resp.status === 429
        ? 'Too many wrong tokens from this address: wait a few seconds and try again.'
        : 'Login failed: ' + (await errorText(resp));
  }

  // logout ends the session on the server (which then refuses its cookie),
  // stops the feed and empties the table, and asks for the token again.
  async function logout() {
    let resp;
    try {
      resp = await fetch('/logout', { method: 'POST', credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      note('not logged out: the server is unreachable');
      return;
    }
    if (!resp.ok) {
      note('not logged out: ' + (await errorText(resp)));
      return;
    }
    gen++;
    clearTimeout(timer);
    closeSocket();
    rows.clear();
    keys = [];
    $('rows').replaceChildren();
    setCount();
    listed = false;
    setRev(0);
    setEditing(null);
    $('logout').hidden = true;
    note('logged out');
    setState('login', 'logged out');
    showLogin();
  }

  // ---- the form ----
  function say(text, cls) {
    const m = $('msg');
    m.textContent = text;
    m.className = 'msg ' + (cls || '');
  }
  function setEditing(e) {
    for (const tr of document.querySelectorAll('#rows tr.selected')) tr.classList.remove('selected');
    editing = e;
    const p = $('editing');
    p.hidden = !e;
    if (!e) return;
    p.textContent = 'Editing revision ' + e.rev + ': if someone changes this key first, Set and Delete report it instead of overwriting.' +
      (e.lease ? ' Set keeps it attached to its lease ' + e.lease + '.' : '');
    const row = rows.get(e.key);
    if (row) row.tr.classList.add('selected');
  }

  async function edit(key) {
    let text;
    try {
      text = await (await api('GET', '/get?key=' + encodeURIComponent(key))).text();
    } catch (e) {
      say(e.status === 404 ? key + ' no longer exists.' : 'Could not load ' + key + ': ' + e.message, 'err');
      return;
    }
    const f = fields(text);
    $('key').value = key;
    $('json').checked = !isString(f.Value);
    $('value').value = isString(f.Value) ? JSON.parse(f.Value) : f.Value;
    setEditing({ key, rev: Number(f.Revision), lease: f.Lease === undefined ? 0 : Number(f.Lease) });
    say('');
  }

  // write sends a set or a delete and reports the outcome on the page.
  async function write(verb, path, key, value) {
    let body = '{"Key":' + JSON.stringify(key);
    if (value !== undefined) body += ',"Value":' + value;
    const cond = editing && editing.key === key ? editing.rev : null;
    if (cond !== null) body += ',"IfRevision":' + cond;
    // A set without the lease would detach the key from it.
    if (verb === 'set' && cond !== null && editing.lease) body += ',"Lease":' + editing.lease;
    body += '}';
    let resp;
    try {
      resp = await fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body });
    } catch (e) {
      say('The server is unreachable: nothing was written.', 'err');
      return;
    }
    const text = await resp.text();
    if (resp.ok) {
      const rev = Number(fields(text).Revision);
      say((verb === 'set' ? 'Set ' : 'Deleted ') + key + ' at revision ' + rev + '.', 'ok');
      setEditing(verb === 'set' && cond !== null ? { key, rev, lease: editing.lease } : null);
      return;
    }
    if (resp.status === 401) showLogin();
    let why;
    try {
      const f = fields(text);
      why = f.error ? JSON.parse(f.error) : 'HTTP ' + resp.status;
      if (resp.status === 409) {
        if (!f.Current || f.Current === 'null') {
          why = key + ' was deleted by someone else after you loaded revision ' + cond + '.';
        } else {
          const cur = fields(f.Current);
          why = key + ' was changed by someone else after you loaded revision ' + cond +
            ': it is now revision ' + cur.Revision + ', value ' + shown(cur.Value) +
            '. Click its row to edit the current value.';
        }
      } else if (resp.status === 404 && why.startsWith('lease not found')) {
        why = 'its lease ' + editing.lease + ' has ended (the key is being deleted).';
      } else if (resp.status === 404) {
        why = key + ' does not exist.';
      }
    } catch (e) {
      why = 'HTTP ' + resp.status;
    }
    say('Not ' + (verb === 'set' ? 'set' : 'deleted') + ': ' + why, 'err');
  }

  function onSet(ev) {
    ev.preventDefault();
    const key = $('key').value;
    if (!key) return say('Enter a key.', 'err');
    let value = $('value').value;
    if ($('json').checked) {
      try {
        JSON.parse(value);
      } catch (e) {
        return say('The value is not valid JSON (' + e.message + '). Uncheck "value is JSON" to store it as a string.', 'err');
      }
      value = value.trim();
    } else {
      value = JSON.stringify(value);
    }
    write('set', '/set', key, value);
  }
  function onDelete() {
    const key = $('key').value;
    if (!key) return say('Enter a key.', 'err');
    write('delete', '/delete', key);
  }

  // ---- wiring ----
  $('edit').addEventListener('submit', onSet);
  $('delete').addEventListener('click', onDelete);
  $('new').addEventListener('click', () => {
    $('key').value = '';
    $('value').value = '';
    $('json').checked = false;
    setEditing(null);
    say('');
    $('key').focus();
  });
  $('key').addEventListener('input', () => {
    if (editing && $('key').value !== editing.key) setEditing(null);
  });
  $('rows').addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr');
    if (tr && tr.dataset.key !== undefined) edit(tr.dataset.key);
  });
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  let filterTimer = 0;
  $('prefix').addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      if ($('prefix').value === prefix) return;
      prefix = $('prefix').value;
      attempt = 0;
      connect(true);
    }, 250);
  });
  connect(true);
})();
