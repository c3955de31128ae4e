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
    demo_source: 'Demo call',
    demo_finished: 'Demo finished',
  };
  const MAX_ENDED = 20;
  const MAX_ACKED_SHOWN = 3;  // open alerts are all shown, in full; acknowledged ones only the latest few
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
    pinned: false,           // the supervisor chose the call shown: new live calls do not take its place
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
    const all = [...state.calls.values()];
    // a call whose monitoring was lost may still be going on: it stays with the live ones, marked
    const live = all.filter((c) => !c.ended_at || isLost(c)).sort((a, b) =>
      (CS.LEVEL_RANK[b.level] || 0) - (CS.LEVEL_RANK[a.level] || 0) || String(a.started_at).localeCompare(String(b.started_at)));
    const ended = all.filter((c) => c.ended_at && !isLost(c)).sort((a, b) => String(b.ended_at).localeCompare(String(a.ended_at))).slice(0, MAX_ENDED);
    const lost = live.filter(isLost).length;
    $('calls-count').textContent = `${live.length - lost} live${lost ? ` · ${lost} monitoring lost` : ''}`;
    $('calls-empty').classList.toggle('hidden', live.length > 0);
    const rowOf = (call, ...cells) => el('tr', {
      class: [call.id === state.selected ? 'selected' : '', call.ended_at ? 'ended' : '', `lvl-${call.ended_at ? call.peak_level : call.level}`].join(' '),
      'data-call': call.id,
      onclick: () => select(call.id, true),
    }, el('td', {}, call.partner), el('td', {}, call.seat), el('td', { class: 'mono' }, CS.clock(call.started_at)), ...cells);
    const body = clear($('calls'));
    for (const call of live) {
      body.appendChild(rowOf(call,
        el('td', { class: 'mono' }, isLost(call) ? '?' : CS.since(call.started_at)),
        el('td', {}, levelBadge(call.level), isLost(call) ? el('span', { class: 'tag lost' }, ' Monitoring lost') : null),
        el('td', { class: 'mono' }, call.open_alerts ? String(call.open_alerts) : '')));
    }
    $('ended-section').classList.toggle('hidden', !ended.length);
    const endedBody = clear($('ended-calls'));
    for (const call of ended) {
      endedBody.appendChild(rowOf(call,
        el('td', { class: 'mono' }, isLost(call) ? '?' : CS.seconds(call.length)),
        el('td', {}, levelBadge(call.peak_level || call.level)),
        el('td', {}, CS.endWords(call))));
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
    const status = isLost(call) ? `monitoring lost at ${CS.clock(call.ended_at)}: the agent ${call.agent} stopped answering, the call may still be going on`
      : call.ended_at ? `ended at ${CS.clock(call.ended_at)}: ${CS.endWords(call)}` : 'live';
    head.appendChild(el('span', { class: 'meta' }, [`Seat ${call.seat}`, SOURCE_NAMES[call.source] || call.source, status].join(' · ')));
    head.appendChild(levelBadge(call.level));
    head.appendChild(state.pinned
      ? el('button', { type: 'button', class: 'follow', id: 'follow', title: 'Show each new live call as it starts', onclick: follow }, 'Follow new calls')
      : el('span', { class: 'tag follow', id: 'following', title: 'Click a call to keep it on screen' }, 'Following new calls'));

    const transcript = $('transcript');
    const atBottom = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 8;
    clear(transcript);
    const lines = state.lines.get(call.id) || [];
    const finds = state.findings.get(call.id) || [];
    for (const u of lines) {
      const ranges = u.speaker === 'customer' ? CS.evidenceRanges(u, finds) : [];
      transcript.appendChild(el('div', { class: `line ${u.speaker}${ranges.length ? ' flagged' : ''}` },
        el('span', { class: 't mono' }, CS.seconds(u.start)),
        el('span', { class: 'who' }, u.speaker),
        el('span', { class: 'text' }, CS.marked(u.text, ranges))));
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
          el('span', { class: 'cat' }, CS.categoryWords(f)),
          el('span', { class: 'sev' }, `${CS.severityWords(f.severity)} · ${CS.seconds(f.start)}`)),
        el('div', { class: 'quote' }, CS.findingQuote(f, lines)),
        f.why ? el('div', { class: 'why' }, f.why) : null));
    }

    const auth = state.authorizations.get(call.id);
    const canAuthorize = state.role === 'supervisor' && !call.ended_at && !auth;
    $('authorize-form').classList.toggle('hidden', !canAuthorize);
    // Say why the form is gone: ending is authorized for calls still going on only (console/store/supervision.py).
    const closed = $('authorize-closed');
    const typed = $('authorize-reason').value.trim();
    closed.classList.toggle('hidden', !(state.role === 'supervisor' && call.ended_at && !auth));
    closed.textContent = isLost(call)
      ? 'callshield no longer hears this call, so it cannot end it: reach the partner another way if needed.'
      : `This call ended at ${CS.clock(call.ended_at)} before anyone authorized ending it: there is nothing left to end.${typed ? ' Your reason was not sent.' : ''}`;
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
    const open = alerts.filter((a) => !a.acknowledged_at);
    const acked = alerts.filter((a) => a.acknowledged_at);
    for (const a of open.concat(acked.slice(0, MAX_ACKED_SHOWN))) {
      box.appendChild(el('article', { class: `card alert-card level-${a.level}-card ${a.acknowledged_at ? 'acked' : ''}`, 'data-alert': a.id },
        el('div', { class: 'top' }, levelBadge(a.level), el('strong', {}, a.partner), el('span', { class: 'tag' }, `seat ${a.seat}`), el('span', { class: 'when' }, CS.clock(a.raised_at))),
        el('div', { class: 'what' }, a.reason),
        el('div', { class: 'actions' },
          el('button', { type: 'button', onclick: () => select(a.call_id, true) }, 'Open call'),
          a.acknowledged_at
            ? el('span', { class: 'tag' }, `Acknowledged by ${a.acknowledged_by}`)
            : (state.role === 'supervisor' ? el('button', { type: 'button', class: 'primary ack', onclick: () => link.send('ack_alert', { alert_id: a.id }) }, 'Acknowledge') : null))));
    }
    if (acked.length > MAX_ACKED_SHOWN) {
      const more = acked.length - MAX_ACKED_SHOWN;
      box.appendChild(el('p', { class: 'more' }, `and ${more} older acknowledged alert${more === 1 ? '' : 's'} (see QA replay)`));
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
          h.call_id ? el('button', { type: 'button', onclick: () => select(h.call_id, true) }, 'Open call') : null,
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
          el('button', { type: 'button', onclick: () => select(c.call_id, true) }, 'Open call'),
          el('button', { type: 'button', class: 'primary', onclick: () => link.send('checkin_done', { checkin_id: c.id, note: '' }) }, 'Checked in'))));
    }
  }

  function render() {
    renderCalls();
    renderDetail();
    if (state.role === 'supervisor') renderFeeds();
  }

  /** Show ``callId``; ``pin``: the supervisor chose it, so new live calls do not replace it. */
  function select(callId, pin) {
    if (pin !== undefined) state.pinned = pin;
    if (callId === state.selected) { schedule(); return; }
    state.selected = callId;
    $('authorize-reason').value = '';
    $('authorize-button').disabled = true;
    $('authorize-state').textContent = '';
    link.send('call_detail', { call_id: callId });
    schedule();
  }

  /** The newest live call, or null. */
  function newestLive() {
    const live = [...state.calls.values()].filter((c) => !c.ended_at).sort((a, b) => String(b.started_at).localeCompare(String(a.started_at)));
    return live.length ? live[0].id : null;
  }

  /** Stop keeping the chosen call on screen: show the newest live call, and each new one as it starts. */
  function follow() {
    state.pinned = false;
    const id = newestLive();
    if (id) select(id);
    else schedule();
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
        {
          const keep = state.selected && state.calls.has(state.selected) && (state.pinned || !newestLive());
          const target = keep ? state.selected : (newestLive() || (msg.calls.length ? msg.calls[0].id : null));
          if (target && target === state.selected) link.send('call_detail', { call_id: target });
          else if (target) select(target);
        }
        break;
      case 'call': {
        const isNew = !state.calls.has(msg.call.id);
        state.calls.set(msg.call.id, msg.call);
        if (!state.selected || (isNew && !msg.call.ended_at && !state.pinned)) select(msg.call.id);
        break;
      }
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
    if (msg.cluster && msg.cluster !== 'connected') parts.push(`console ${msg.replica} cut off from the other consoles (${msg.cluster}): calls on them are not shown live here`);
    if (msg.cluster_lost) parts.push(`${msg.cluster_lost.toLocaleString()} live updates lost between consoles`);
    if (msg.cluster_resyncs) parts.push(`screens refreshed ${msg.cluster_resyncs.toLocaleString()} time${msg.cluster_resyncs === 1 ? '' : 's'} to catch up`);
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
