/* callshield console: helpers shared by every page.
 * Data from the console is only ever put on the page as text (textContent /
 * text nodes), never as HTML, so a transcript cannot inject markup. */
'use strict';

const CS = (() => {
  const TOKEN_KEY = 'callshield.token';
  const NOTICE_KEY = 'callshield.notice';
  /* Close code of a socket whose session ended (logout elsewhere, expiry,
   * password changed, user removed); console/browsers.py SIGNED_OUT. */
  const SIGNED_OUT = 4401;
  const HOME = { partner: '/partner', supervisor: '/supervisor', qa: '/supervisor', admin: '/supervisor' };
  /* The ladder's levels come from the server (/static/levels.js, generated from kernel/levels.py). */
  const LEVEL_NAMES = Object.freeze(Object.fromEntries(CS_LEVELS.map((l) => [l.name, l.label])));
  const LEVEL_RANK = Object.freeze(Object.fromEntries(CS_LEVELS.map((l, i) => [l.name, i])));

  /** Build an element; children that are not nodes become text nodes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function levelBadge(level) {
    const known = Object.prototype.hasOwnProperty.call(LEVEL_NAMES, level) ? level : 'none';
    return el('span', { class: `level level-${known}` }, LEVEL_NAMES[known]);
  }

  function clock(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function seconds(s) {
    const total = Math.max(0, Math.floor(Number(s) || 0));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), r = total % 60;
    const mm = h ? String(m).padStart(2, '0') : String(m);
    return `${h ? `${h}:` : ''}${mm}:${String(r).padStart(2, '0')}`;
  }

  function since(iso) {
    const start = new Date(iso).getTime();
    return Number.isNaN(start) ? '' : seconds((Date.now() - start) / 1000);
  }

  /** Text with [first, last) marked: text nodes and one <mark>. */
  // The text with each [first, last) range in a <mark>; ranges sorted, disjoint, inside the text.
  function marked(text, ranges) {
    const frag = document.createDocumentFragment();
    let at = 0;
    for (const [a, b] of ranges) {
      if (a > at) frag.appendChild(document.createTextNode(text.slice(at, a)));
      frag.appendChild(el('mark', {}, text.slice(a, b)));
      at = b;
    }
    if (at < text.length) frag.appendChild(document.createTextNode(text.slice(at)));
    return frag;
  }

  function highlighted(text, span) {
    text = String(text || '');
    const valid = Array.isArray(span) && span.length === 2 && span[0] >= 0 && span[0] < span[1] && span[1] <= text.length;
    return marked(text, valid ? [span] : []);
  }

  /** Character ranges of utterance ``u``'s text to mark: the spans of the
   *  findings on it, else (a finding raised on the live partial, whose text
   *  differs from the final line) their evidence words found in it; sorted, merged. */
  function evidenceRanges(u, findings) {
    const text = String(u.text || '');
    const ranges = [];
    for (const f of findings) {
      if (f.end < u.start - 0.01 || f.start > u.end + 0.01) continue;
      if (f.text === text && Array.isArray(f.span)) {
        ranges.push([f.span[0], f.span[1]]);
      } else if (f.evidence) {
        const at = text.toLowerCase().indexOf(String(f.evidence).toLowerCase());
        if (at >= 0) ranges.push([at, at + String(f.evidence).length]);
      }
    }
    ranges.sort((a, b) => a[0] - b[0]);
    const merged = [];
    for (const r of ranges) {
      if (r[0] < 0 || r[1] > text.length || r[0] >= r[1]) continue;
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    return merged;
  }

  /** A finding's words: the final transcript line they were said in, marked, once it has come
   *  (a finding raised on the live partial carries the partial's shorter text); else its own text. */
  function findingQuote(f, lines) {
    for (const u of lines) {
      if (u.speaker !== 'customer') continue;
      const ranges = evidenceRanges(u, [f]);
      if (ranges.length) return marked(u.text, ranges);
    }
    return f.text ? highlighted(f.text, f.span) : f.evidence;
  }

  /** A finding's category in plain words, capitalized (kernel/levels.py CATEGORY_WORDS), with its subtype. */
  function categoryWords(f) {
    const words = String(CS_CATEGORY_WORDS[f.category] || String(f.category).replace(/_/g, ' '));
    const subtype = f.subtype ? ` (${String(f.subtype).replace(/_/g, ' ')})` : '';
    return words.charAt(0).toUpperCase() + words.slice(1) + subtype;
  }

  function severityWords(severity) {
    return CS_SEVERITY_WORDS[severity] || String(severity);
  }

  // How a call ended (the call's `end_reason`, kernel/protocol.py CallEnded), in words.
  const END_WORDS = {
    hangup: 'hung up',
    end_of_file: 'the recording ended',
    authorized_end: 'ended after authorization',
    error: 'monitoring failed',
    shutdown: 'callshield was shut down',
    closed: 'the line closed',
    refused: 'refused',
    cancelled: 'cancelled',
    stream_lost: 'the audio stream was lost',
    lost: 'monitoring lost',
  };
  /** How ``call`` ended, in words. */
  function endWords(call) {
    return END_WORDS[call.end_reason] || String(call.end_reason || 'ended').replace(/_/g, ' ');
  }

  function socketUrl() {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/browser`;
  }

  /** The page's link to the console: resumes the stored session, reconnects
   *  with backoff, and hands every message to onMessage. */
  class Link {
    /** page: this page's path; roles (optional): roles that may stay on it
     *  (default: only those whose home it is); others go to their own home. */
    constructor({ page, roles, onMessage, onStatus }) {
      this.page = page;
      this.roles = roles || null;
      this.onMessage = onMessage;
      this.onStatus = onStatus || (() => {});
      this.ws = null;
      this.backoff = 500;
      this.session = null;
      this.counter = 0;
    }

    start() {
      if (!sessionStorage.getItem(TOKEN_KEY)) { location.replace('/'); return; }
      this.connect();
    }

    connect() {
      this.onStatus('connecting');
      const ws = new WebSocket(socketUrl());
      this.ws = ws;
      ws.onopen = () => ws.send(JSON.stringify({ v: 1, type: 'resume', token: sessionStorage.getItem(TOKEN_KEY) || '' }));
      ws.onmessage = (event) => {
        let msg;
        try { msg = JSON.parse(event.data); } catch (err) { return; }
        if (msg.type === 'session') {
          this.session = msg;
          this.backoff = 500;
          const home = HOME[msg.role] || '/';
          const welcome = this.roles ? this.roles.includes(msg.role) : home === this.page;
          if (!welcome) { location.replace(home); return; }
          this.onStatus('online');
        } else if (msg.type === 'error' && msg.code === 'not_authenticated') {
          this.signedOut(msg.message);
          return;
        }
        this.onMessage(msg);
      };
      ws.onclose = (event) => {
        if (this.ws !== ws) return;
        if (event.code === SIGNED_OUT) { this.signedOut('You were signed out: your session has ended.'); return; }
        this.onStatus('offline');
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 10000);
      };
    }

    /** Send a request; returns its ref. */
    send(type, fields) {
      const ref = `r${++this.counter}`;
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify(Object.assign({ v: 1, type, ref }, fields || {})));
      }
      return ref;
    }

    /** Back to the sign-in page, which shows why. */
    signedOut(why) {
      this.ws = null;
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.setItem(NOTICE_KEY, why || 'You were signed out.');
      location.replace('/');
    }

    logout() {
      this.send('logout');
      sessionStorage.removeItem(TOKEN_KEY);
      setTimeout(() => location.replace('/'), 150);
    }
  }

  function statusPill(node) {
    return (state) => {
      node.className = `status ${state === 'online' ? 'online' : 'offline'}`;
      node.textContent = state === 'online' ? 'Connected' : state === 'connecting' ? 'Connecting…' : 'Reconnecting…';
    };
  }

  return { TOKEN_KEY, NOTICE_KEY, HOME, LEVEL_NAMES, LEVEL_RANK, el, clear, levelBadge, clock, seconds, since, highlighted, marked, evidenceRanges, findingQuote, categoryWords, severityWords, endWords, Link, statusPill, socketUrl };
})();
