/* Supervisor dashboard: live calls with their level, live transcript with
 * partials, findings with the evidence highlighted, the alert feed with
 * acknowledge, help requests, end-call authorization with a required reason
 * and what became of the call's end-call request (the webhook to the phone
 * system, for calls the agent cannot hang up), and the check-in queue. QA and
 * admin users get the read-only parts.
 * Every value from the console is inserted as text. */
'use strict';

(() => {
  const { el, clear, levelBadge } = CS;
  const $ = (id) => document.getElementById(id);
  const MAX_LINES = 500;
  // How the call reached callshield (the call's `source`), in words.
  const SOURCE_NAMES = {
    audiosocket: 'live from the PBX',
    device: 'live from a sound device',
    wav: 'recording, transcribed',
    transcript: 'replayed from a timed transcript',
  };

  // Notice codes in words (others are shown as sent).
  const NOTICE_TITLES = {
    monitoring_lost: 'Monitoring lost',
    events_refused: 'Agent events refused',
    end_call_webhook_failed: 'End-call request failed',
    end_call_webhook_not_configured: 'Call cannot be ended by callshield',
  };
  // An end-call webhook's outcomes (notice code end_call_webhook_<outcome>), shown on the call;
  // the feed shows only those that ask the supervisor to act (failed, not configured).
  const END_REQUEST = 'end_call_webhook_';
  const END_REQUEST_TITLES = {
    delivered: 'End-call request delivered',
    retrying: 'End-call request retrying',
    failed: 'End-call request failed',
    not_configured: 'No end-call request',
  };
  const isEndRequest = (n) => String(n.code).startsWith(END_REQUEST);
  const inFeed = (n) => !isEndRequest(n) || Object.prototype.hasOwnProperty.call(NOTICE_TITLES, n.code);
  const isLost = (call) => call.end_reason === 'lost';
  function endTag(call) {
    if (isLost(call)) return el('span', { class: 'tag lost' }, ' Monitoring lost');
    return call.ended_at ? el('span', { class: 'tag' }, ' ended') : null;
  }

  const state = {
    role: null,
    calls: new Map(),        // id -> call record
    lines: new Map(),        // call id -> utterances
    partials: new Map(),     // call id -> partial
    findings: new Map(),     // call id -> findings
    authorizations: new Map(), // call id -> authorization
    endRequests: new Map(),    // call id -> its end-call webhook notices, oldest first
    alerts: new Map(),
    help: new Map(),
    checkins: new Map(),
    notices: [],
    selected: null,
  };
  let pending = false;

  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  }

  function push(map, key, item, limit) {
    const list = map.get(key) || [];
    if (item.id !== undefined && list.some((x) => x.id === item.id)) return;
    list.push(item);
    if (list.length > limit) list.splice(0, list.length - limit);
    map.set(key, list);
  }

  // ------------------------------------------------------------ calls table
  function renderCalls() {
    const body = clear($('calls'));
    const calls = [...state.calls.values()].sort((a, b) =>
      (a.ended_at ? 1 : 0) - (b.ended_at ? 1 : 0) || (CS.LEVEL_RANK[b.level] || 0) - (CS.LEVEL_RANK[a.level] || 0) || String(a.started_at).localeCompare(String(b.started_at)));
    const live = calls.filter((c) => !c.ended_at).length;
    $('calls-count').textContent = state.role === 'supervisor' ? `${live} live` : `${calls.length}`;
    $('calls-empty').classList.toggle('hidden', calls.length > 0);
    for (const call of calls) {
      const row = el('tr', {
        class: [call.id === state.selected ? 'selected' : '', call.ended_at ? 'ended' : '', `lvl-${call.level}`].join(' '),
        'data-call': call.id,
        onclick: () => select(call.id),
      },
      el('td', {}, call.partner),
      el('td', {}, call.seat),
      el('td', { class: 'mono' }, CS.clock(call.started_at)),
      el('td', { class: 'mono' }, isLost(call) ? '?' : call.ended_at ? CS.seconds(call.length) : CS.since(call.started_at)),
      el('td', {}, levelBadge(call.level), endTag(call)),
      el('td', { class: 'mono' }, call.open_alerts ? String(call.open_alerts) : ''));
      body.appendChild(row);
    }
  }

  // ------------------------------------------------------------ call detail
  function renderDetail() {
    const call = state.calls.get(state.selected);
    const head = clear($('detail-head'));
    $('detail-empty').classList.toggle('hidden', Boolean(call));
    $('detail-body').classList.toggle('hidden', !call);
    if (!call) {
      head.appendChild(el('h2', {}, 'Call'));
      $('authorize-form').classList.add('hidden');
      $('authorized-note').classList.add('hidden');
      return;
    }
    head.appendChild(el('h3', {}, call.partner));
    head.appendChild(el('span', { class: 'meta' }, [`Seat ${call.seat}`, `agent ${call.agent}`, SOURCE_NAMES[call.source] || call.source, isLost(call) ? `monitoring lost at ${CS.clock(call.ended_at)}: the agent stopped answering, the call may still be going on` : call.ended_at ? `ended (${call.end_reason || ''})` : 'live'].join(' · ')));
    head.appendChild(levelBadge(call.level));

    const transcript = $('transcript');
    const atBottom = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 8;
    clear(transcript);
    const lines = state.lines.get(call.id) || [];
    const finds = state.findings.get(call.id) || [];
    for (const u of lines) {
      const hit = finds.find((f) => f.text === u.text && Math.abs(f.start - u.start) < 0.01 && f.span);
      transcript.appendChild(el('div', { class: `line ${u.speaker}` },
        el('span', { class: 't mono' }, CS.seconds(u.start)),
        el('span', { class: 'who' }, u.speaker),
        el('span', { class: 'text' }, hit ? CS.highlighted(u.text, hit.span) : u.text)));
    }
    const partial = state.partials.get(call.id);
    if (partial && partial.text) {
      transcript.appendChild(el('div', { class: `line partial ${partial.speaker}` },
        el('span', { class: 't mono' }, CS.seconds(partial.start)),
        el('span', { class: 'who' }, partial.speaker),
        el('span', { class: 'text' }, partial.text)));
    }
    if (!lines.length && !(partial && partial.text)) transcript.appendChild(el('p', { class: 'empty' }, 'Nothing said yet.'));
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;

    const box = clear($('findings'));
    if (!finds.length) box.appendChild(el('p', { class: 'empty' }, 'No findings.'));
    for (const f of finds) {
      box.appendChild(el('div', { class: `finding sev-${f.severity}` },
        el('div', { class: 'top' },
          el('span', { class: 'cat' }, f.subtype ? `${f.category} · ${f.subtype}` : f.category),
          el('span', { class: 'sev' }, `${f.severity} · ${CS.seconds(f.start)}`)),
        el('div', { class: 'quote' }, f.text ? CS.highlighted(f.text, f.span) : f.evidence),
        f.why ? el('div', { class: 'why' }, f.why) : null));
    }

    const auth = state.authorizations.get(call.id);
    const canAuthorize = state.role === 'supervisor' && !call.ended_at && !auth;
    $('authorize-form').classList.toggle('hidden', !canAuthorize);
    const note = $('authorized-note');
    note.classList.toggle('hidden', !auth);
    if (auth) note.textContent = `Ending authorized by ${auth.by} at ${CS.clock(auth.authorized_at)}: ${auth.reason}`;
    renderEndRequest(state.endRequests.get(call.id) || []);
  }

  function renderEndRequest(requests) {
    const box = clear($('end-request'));
    const last = requests[requests.length - 1];
    if (!last) {
      box.className = 'end-request hidden';
      return;
    }
    const outcome = last.code.slice(END_REQUEST.length);
    const known = Object.prototype.hasOwnProperty.call(END_REQUEST_TITLES, outcome) ? outcome : 'failed';
    box.className = `end-request outcome-${known}`;
    box.setAttribute('data-outcome', known);
    box.appendChild(el('div', { class: 'latest' }, el('strong', {}, END_REQUEST_TITLES[known]), ' ',
      el('span', { class: 'when' }, CS.clock(last.received_at))));
    box.appendChild(el('div', { class: 'what' }, last.message));
    if (requests.length > 1) {
      box.appendChild(el('ol', { class: 'history' },
        requests.slice(0, -1).map((n) => el('li', {}, `${CS.clock(n.received_at)} ${n.message}`))));
    }
  }

  // ------------------------------------------------------------ feeds
  function renderFeeds() {
    const alerts = [...state.alerts.values()].sort((a, b) => (a.acknowledged_at ? 1 : 0) - (b.acknowledged_at ? 1 : 0) || b.id - a.id);
    const box = clear($('alerts'));
    $('alerts-count').textContent = `${alerts.filter((a) => !a.acknowledged_at).length} open`;
    const notices = state.notices.filter(inFeed);
    if (!alerts.length && !notices.length) box.appendChild(el('p', { class: 'empty' }, 'No alerts.'));
    for (const a of alerts) {
      box.appendChild(el('article', { class: `card alert-card level-${a.level}-card ${a.acknowledged_at ? 'acked' : ''}`, 'data-alert': a.id },
        el('div', { class: 'top' }, levelBadge(a.level), el('strong', {}, a.partner), el('span', { class: 'tag' }, `seat ${a.seat}`), el('span', { class: 'when' }, CS.clock(a.raised_at))),
        el('div', { class: 'what' }, a.reason),
        el('div', { class: 'actions' },
          el('button', { type: 'button', onclick: () => select(a.call_id) }, 'Open call'),
          a.acknowledged_at
            ? el('span', { class: 'tag' }, `Acknowledged by ${a.acknowledged_by}`)
            : (state.role === 'supervisor' ? el('button', { type: 'button', class: 'primary ack', onclick: () => link.send('ack_alert', { alert_id: a.id }) }, 'Acknowledge') : null))));
    }
    for (const n of notices.slice(-5).reverse()) {
      box.appendChild(el('article', { class: 'card acked' },
        el('div', { class: 'top' }, el('strong', {}, NOTICE_TITLES[n.code] || n.code), el('span', { class: 'when' }, CS.clock(n.received_at))),
        el('div', { class: 'what' }, n.message)));
    }

    const help = [...state.help.values()].sort((a, b) => b.id - a.id);
    const hbox = clear($('help'));
    $('help-count').textContent = help.filter((h) => !h.acknowledged_at).length ? `${help.filter((h) => !h.acknowledged_at).length} waiting` : '';
    if (!help.length) hbox.appendChild(el('p', { class: 'empty' }, 'No one is asking for help.'));
    for (const h of help) {
      hbox.appendChild(el('article', { class: `card help-card ${h.acknowledged_at ? 'acked' : ''}`, 'data-help': h.id },
        el('div', { class: 'top' }, el('strong', {}, h.partner), h.seat ? el('span', { class: 'tag' }, `seat ${h.seat}`) : null, el('span', { class: 'when' }, CS.clock(h.created_at))),
        el('div', { class: 'what' }, h.note || 'Asks for help on their call.'),
        el('div', { class: 'actions' },
          h.call_id ? el('button', { type: 'button', onclick: () => select(h.call_id) }, 'Open call') : null,
          h.acknowledged_at ? el('span', { class: 'tag' }, `Taken by ${h.acknowledged_by}`)
            : el('button', { type: 'button', class: 'primary', onclick: () => link.send('ack_help', { help_id: h.id }) }, 'I\u2019m going'))));
    }

    const checkins = [...state.checkins.values()].filter((c) => !c.done_at).sort((a, b) => a.id - b.id);
    const cbox = clear($('checkins'));
    $('checkins-count').textContent = checkins.length ? `${checkins.length}` : '';
    if (!checkins.length) cbox.appendChild(el('p', { class: 'empty' }, 'No partners waiting for a check-in.'));
    for (const c of checkins) {
      const call = state.calls.get(c.call_id);
      cbox.appendChild(el('article', { class: 'card checkin-card', 'data-checkin': c.id },
        el('div', { class: 'top' }, el('strong', {}, c.partner), el('span', { class: 'tag' }, call && !call.ended_at ? 'still on the call' : 'call ended'), el('span', { class: 'when' }, CS.clock(c.created_at))),
        el('div', { class: 'what' }, c.reason),
        el('div', { class: 'actions' },
          el('button', { type: 'button', onclick: () => select(c.call_id) }, 'Open call'),
          el('button', { type: 'button', class: 'primary', onclick: () => link.send('checkin_done', { checkin_id: c.id, note: '' }) }, 'Checked in'))));
    }
  }

  function render() {
    renderCalls();
    renderDetail();
    if (state.role === 'supervisor') renderFeeds();
  }

  function select(callId) {
    state.selected = callId;
    $('authorize-reason').value = '';
    $('authorize-button').disabled = true;
    $('authorize-state').textContent = '';
    link.send('call_detail', { call_id: callId });
    schedule();
  }

  function adaptToRole(role) {
    state.role = role;
    const supervisor = role === 'supervisor';
    for (const id of ['alerts-panel', 'help-panel', 'checkins-panel']) $(id).classList.toggle('hidden', !supervisor);
    $('users-panel').classList.toggle('hidden', role !== 'admin');
    $('page-title').textContent = { supervisor: 'Supervisor', qa: 'Quality review', admin: 'Administration' }[role] || role;
    $('calls-title').textContent = supervisor ? 'Live calls' : 'Recent calls';
    if (role === 'admin') link.send('list_users');
  }

  function onMessage(msg) {
    switch (msg.type) {
      case 'session':
        $('who').textContent = `${msg.user} (${msg.role})`;
        adaptToRole(msg.role);
        return;
      case 'snapshot':
        state.calls = new Map(msg.calls.map((c) => [c.id, c]));
        state.alerts = new Map(msg.alerts.map((a) => [a.id, a]));
        state.help = new Map(msg.help.map((h) => [h.id, h]));
        state.checkins = new Map(msg.checkins.map((c) => [c.id, c]));
        if (state.selected && state.calls.has(state.selected)) link.send('call_detail', { call_id: state.selected });
        else if (msg.calls.length) select(msg.calls[0].id);
        break;
      case 'call':
        state.calls.set(msg.call.id, msg.call);
        if (!state.selected) select(msg.call.id);
        break;
      case 'partial':
        state.partials.set(msg.call_id, msg);
        if (msg.call_id !== state.selected) return;
        break;
      case 'utterance':
        push(state.lines, msg.utterance.call_id, msg.utterance, MAX_LINES);
        if (state.partials.has(msg.utterance.call_id) && state.partials.get(msg.utterance.call_id).speaker === msg.utterance.speaker) state.partials.delete(msg.utterance.call_id);
        if (msg.utterance.call_id !== state.selected) return;
        break;
      case 'finding':
        push(state.findings, msg.finding.call_id, msg.finding, MAX_LINES);
        break;
      case 'level':
        break;
      case 'alert':
        state.alerts.set(msg.alert.id, msg.alert);
        break;
      case 'authorization':
        state.authorizations.set(msg.authorization.call_id, msg.authorization);
        if (msg.authorization.call_id === state.selected) $('authorize-state').textContent = '';
        break;
      case 'help':
        state.help.set(msg.help.id, msg.help);
        break;
      case 'checkin':
        state.checkins.set(msg.checkin.id, msg.checkin);
        break;
      case 'load':
        showLoad(msg);
        return;
      case 'notice':
        if (isEndRequest(msg.notice) && msg.notice.call_id) push(state.endRequests, msg.notice.call_id, msg.notice, 20);
        state.notices.push(msg.notice);
        if (state.notices.length > 50) state.notices.shift();
        break;
      case 'call_detail': {
        const d = msg.detail;
        state.calls.set(d.call.id, d.call);
        state.lines.set(d.call.id, d.utterances.slice(-MAX_LINES));
        state.findings.set(d.call.id, d.findings.slice(-MAX_LINES));
        if (d.authorizations.length) state.authorizations.set(d.call.id, d.authorizations[0]);
        state.endRequests.set(d.call.id, (d.notices || []).filter(isEndRequest).slice(-20));
        break;
      }
      case 'calls':
        for (const c of msg.calls) state.calls.set(c.id, c);
        break;
      case 'users': {
        const box = clear($('users'));
        for (const u of msg.users) box.appendChild(el('div', { class: 'card' }, el('div', { class: 'top' }, el('strong', {}, u.name), el('span', { class: 'tag' }, u.role), el('span', { class: 'when' }, CS.clock(u.created_at)))));
        return;
      }
      case 'error':
        $('authorize-state').textContent = msg.message;
        break;
      default:
        return;
    }
    schedule();
  }

  // What the floor did not see live because of load (console/load.py): counts, in plain words.
  function showLoad(msg) {
    const parts = [];
    if (msg.partials_shed) parts.push(`${msg.partials_shed.toLocaleString()} live text updates skipped for slow screens`);
    const agentDrops = msg.agents.filter((a) => a.partials_dropped);
    for (const a of agentDrops) parts.push(`${a.partials_dropped.toLocaleString()} not sent by ${a.agent}`);
    if (msg.browsers_dropped) parts.push(`${msg.browsers_dropped.toLocaleString()} slow screen${msg.browsers_dropped === 1 ? '' : 's'} reconnected`);
    const box = $('load');
    box.textContent = parts.length ? `Under load: ${parts.join('; ')}. Final lines and alerts are all kept.` : '';
    box.classList.toggle('hidden', !parts.length);
  }

  const link = new CS.Link({ page: '/supervisor', onMessage, onStatus: CS.statusPill($('status')) });
  $('logout').addEventListener('click', () => link.logout());
  $('authorize-reason').addEventListener('input', (e) => { $('authorize-button').disabled = !e.target.value.trim(); });
  $('authorize-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const reason = $('authorize-reason').value.trim();
    if (!reason || !state.selected) return;
    $('authorize-button').disabled = true;
    $('authorize-state').textContent = 'Sending…';
    link.send('authorize_end', { call_id: state.selected, reason });
  });
  setInterval(() => { if (state.calls.size) renderCalls(); }, 1000);
  link.start();
})();
