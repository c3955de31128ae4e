/* QA replay: flagged calls with filters and counts; a player whose loudness
 * timeline shows where findings fired; the transcript of both speakers
 * follows playback with the evidence words marked; clicking a finding, a
 * line or the timeline seeks there; QA marks findings confirmed or false
 * alarm with a note; evidence export. For qa, supervisor and admin users.
 * Every value from the console is inserted as text (text nodes and <mark>). */
'use strict';

(() => {
  const { el, clear, levelBadge, marked } = CS;
  const $ = (id) => document.getElementById(id);
  const ROLES = ['qa', 'supervisor', 'admin'];
  const COLORS = { customer: '#1f4e79', partner: '#6aa3d8', marker: '#d9480f', markerCurrent: '#b3001b', playhead: '#1c2430' };

  const state = {
    list: [],
    filterChoices: { categories: [], partners: [] },
    detail: null,     // answer of qa_call
    time: 0,          // seconds of audio time the page is at
    current: -1,      // index of the transcript line at state.time
    selectedFinding: null,
    pendingExport: null,
  };

  const link = new CS.Link({ page: '/qa', roles: ROLES, onMessage, onStatus: CS.statusPill($('status')) });

  // ------------------------------------------------------------------ requests
  function filters() {
    return {
      since: $('f-since').value || '',
      until: $('f-until').value || '',
      category: $('f-category').value || '',
      level: $('f-level').value || '',
      partner: $('f-partner').value || '',
    };
  }

  function loadList() { link.send('qa_calls', filters()); }

  function openCall(callId) { link.send('qa_call', { call_id: callId }); }

  // ------------------------------------------------------------------ list
  function fillSelect(select, values) {
    const keep = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const v of values) select.appendChild(el('option', { value: v }, v));
    if (values.includes(keep)) select.value = keep;
  }

  function renderList(msg) {
    state.list = msg.calls || [];
    const counts = msg.counts || {};
    fillSelect($('f-category'), msg.categories || []);
    fillSelect($('f-partner'), msg.partners || []);
    $('counts').textContent = `${counts.calls || 0} calls · ${counts.findings || 0} findings`;
    const parts = Object.entries(counts.by_category || {}).map(([k, n]) => `${k} ${n}`);
    const levels = Object.entries(counts.by_level || {}).map(([k, n]) => `${CS.LEVEL_NAMES[k] || k} ${n}`);
    $('breakdown').textContent = [parts.join(' · '), levels.join(' · ')].filter(Boolean).join('  |  ');
    const body = clear($('calls'));
    $('calls-empty').classList.toggle('hidden', state.list.length > 0);
    const selected = state.detail && state.detail.call.id;
    for (const call of state.list) {
      body.appendChild(el('tr', {
        class: `${call.id === selected ? 'selected' : ''} lvl-${call.peak_level}`,
        'data-call': call.id,
        onclick: () => openCall(call.id),
      },
      el('td', { class: 'mono' }, dateTime(call.started_at)),
      el('td', {}, call.partner),
      el('td', { class: 'mono' }, CS.seconds(call.length)),
      el('td', {}, levelBadge(call.peak_level)),
      el('td', { class: 'mono' }, String(call.findings || 0), call.categories && call.categories.length ? ` (${call.categories.join(', ')})` : ''),
      el('td', { class: call.marked ? 'reviewed mono' : 'mono' }, `${call.marked || 0}/${call.findings || 0}`)));
    }
  }

  function dateTime(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    return `${d.toLocaleDateString()} ${CS.clock(iso)}`;
  }

  // ------------------------------------------------------------------ player
  function renderCall(detail) {
    state.detail = detail;
    state.current = -1;
    state.selectedFinding = null;
    state.time = 0;
    const call = detail.call;
    const head = clear($('call-head'));
    head.appendChild(el('h3', {}, call.partner));
    head.appendChild(el('span', { class: 'meta' }, [`Seat ${call.seat}`, `agent ${call.agent}`, dateTime(call.started_at), call.end_reason ? CS.endWords(call) : ''].filter(Boolean).join(' · ')));
    head.appendChild(levelBadge(call.peak_level || call.level));
    $('player-empty').classList.add('hidden');
    $('player').classList.remove('hidden');
    for (const row of document.querySelectorAll('#calls tr')) row.classList.toggle('selected', row.dataset.call === call.id);

    const audio = $('audio');
    const rec = detail.recording;
    if (rec && rec.url) {
      if (audio.getAttribute('src') !== rec.url) audio.src = rec.url;
      audio.classList.remove('hidden');
      $('no-recording').textContent = '';
    } else {
      audio.removeAttribute('src');
      audio.load();
      audio.classList.add('hidden');
      $('no-recording').textContent = call.source === 'transcript'
        ? 'Replayed from a timed transcript: there is no audio for this call.'
        : 'No recording kept for this call (retention policy); transcript only.';
    }
    $('export-state').textContent = '';
    renderTranscript();
    renderFindings();
    renderAuthorizations();
    drawTimeline();
    follow(0, false);
  }

  function duration() {
    const d = state.detail;
    if (!d) return 0;
    const audio = $('audio');
    if (audio.duration && Number.isFinite(audio.duration)) return audio.duration;
    if (d.recording && d.recording.duration) return d.recording.duration;
    const ends = d.utterances.map((u) => u.end).concat(d.findings.map((f) => f.end));
    return Math.max(d.call.length || 0, ...ends, 1);
  }

  function renderTranscript() {
    const box = clear($('transcript'));
    const lines = state.detail.utterances;
    if (!lines.length) {
      box.appendChild(el('p', { class: 'empty' }, 'No transcript kept for this call.'));
      return;
    }
    lines.forEach((u, i) => {
      const ranges = CS.evidenceRanges(u, state.detail.findings);
      box.appendChild(el('div', {
        class: `line ${u.speaker}${ranges.length ? ' flagged' : ''}`,
        'data-index': i,
        'data-start': u.start,
        onclick: () => seek(u.start),
      },
      el('span', { class: 't mono' }, CS.seconds(u.start)),
      el('span', { class: 'who' }, u.speaker),
      el('span', { class: 'text' }, marked(u.text, ranges))));
    });
  }

  function renderFindings() {
    const box = clear($('findings'));
    const finds = state.detail.findings;
    if (!finds.length) box.appendChild(el('p', { class: 'empty' }, 'No findings.'));
    for (const f of finds) {
      const note = el('input', { type: 'text', maxlength: 2000, placeholder: 'Note (optional)', value: f.mark ? f.mark.note : '' });
      const verdict = f.mark ? el('span', { class: `verdict ${f.mark.verdict}` }, f.mark.verdict === 'confirmed' ? 'confirmed' : 'false alarm', ` · ${f.mark.by}`) : el('span', { class: 'tag' }, 'not reviewed');
      const send = (v) => (event) => { event.stopPropagation(); link.send('qa_mark', { finding_id: f.id, verdict: v, note: note.value }); };
      box.appendChild(el('div', {
        class: `finding sev-${f.severity}${state.selectedFinding === f.id ? ' current' : ''}`,
        'data-finding': f.id,
        'data-start': f.start,
        onclick: (event) => {
          if (event.target.closest('.mark-row')) return;
          state.selectedFinding = f.id;
          for (const node of document.querySelectorAll('#findings .finding')) node.classList.toggle('current', node.dataset.finding === String(f.id));
          seek(f.start);
        },
      },
      el('div', { class: 'top' },
        el('span', { class: 'cat' }, CS.categoryWords(f)),
        el('span', { class: 'sev' }, CS.severityWords(f.severity)),
        el('span', { class: 'tag mono' }, CS.seconds(f.start)),
        verdict),
      el('div', { class: 'quote' }, CS.findingQuote(f, state.detail.utterances)),
      f.why ? el('div', { class: 'why' }, f.why) : null,
      el('div', { class: 'mark-row' }, note,
        el('button', { type: 'button', class: 'confirm', onclick: send('confirmed') }, 'Confirm'),
        el('button', { type: 'button', class: 'false-alarm', onclick: send('false_alarm') }, 'False alarm'))));
    }
  }

  function renderAuthorizations() {
    const box = clear($('authorizations'));
    const auths = state.detail.authorizations || [];
    if (!auths.length) box.appendChild(el('p', { class: 'empty' }, 'None.'));
    for (const a of auths) {
      box.appendChild(el('div', { class: 'card' },
        el('div', { class: 'top' }, el('strong', {}, a.by), el('span', { class: 'when' }, dateTime(a.authorized_at))),
        el('div', { class: 'what' }, a.reason)));
    }
  }

  // ------------------------------------------------------------------ time
  function seek(t) {
    const audio = $('audio');
    const target = Math.max(0, Number(t) || 0);
    if (audio.getAttribute('src')) {
      try { audio.currentTime = target; } catch (err) { /* not seekable yet: follow() still moves the page */ }
    }
    follow(target, true);
  }

  function lineAt(t) {
    const lines = state.detail ? state.detail.utterances : [];
    let found = -1;
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].start <= t + 0.05) found = i; else break;
    }
    return found;
  }

  function follow(t, jump) {
    state.time = t;
    const index = lineAt(t);
    if (index !== state.current) {
      const box = $('transcript');
      const old = box.querySelector('.line.current');
      if (old) old.classList.remove('current');
      const line = index >= 0 ? box.querySelector(`.line[data-index="${index}"]`) : null;
      if (line) {
        line.classList.add('current');
        const top = line.offsetTop - box.offsetTop;
        if (jump || top < box.scrollTop || top + line.offsetHeight > box.scrollTop + box.clientHeight) {
          box.scrollTop = Math.max(0, top - box.clientHeight / 3);
        }
      }
      state.current = index;
    }
    drawTimeline();
  }

  // ------------------------------------------------------------------ timeline
  function drawTimeline() {
    const canvas = $('timeline');
    if (!state.detail || !canvas.clientWidth) return;
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * ratio), h = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, w, h);
    const total = duration();
    const mid = h / 2;
    const env = state.detail.loudness;
    if (env && env.step > 0) {
      for (const [speaker, sign] of [['customer', -1], ['partner', 1]]) {
        const values = env[speaker] || [];
        g.fillStyle = COLORS[speaker];
        for (let i = 0; i < values.length; i++) {
          const x = (i * env.step / total) * w;
          const bw = Math.max(1, (env.step / total) * w);
          const level = Math.max(0, Math.min(1, (values[i] + 60) / 60)); // -60..0 dBFS
          const bh = level * (mid - 4);
          g.fillRect(x, sign < 0 ? mid - bh : mid, bw, bh);
        }
      }
    } else {
      // no recording: show when each speaker talked
      for (const u of state.detail.utterances) {
        g.fillStyle = COLORS[u.speaker] || COLORS.partner;
        const x = (u.start / total) * w, bw = Math.max(2, ((u.end - u.start) / total) * w);
        g.fillRect(x, u.speaker === 'customer' ? mid - 24 * ratio : mid, bw, 24 * ratio);
      }
    }
    g.fillStyle = '#cfd6df';
    g.fillRect(0, mid, w, 1);
    for (const f of state.detail.findings) {
      const x = Math.round((f.start / total) * w);
      g.fillStyle = state.selectedFinding === f.id ? COLORS.markerCurrent : COLORS.marker;
      g.fillRect(x - ratio, 0, 2 * ratio, h);
      g.beginPath();
      g.moveTo(x - 5 * ratio, 0); g.lineTo(x + 5 * ratio, 0); g.lineTo(x, 8 * ratio); g.closePath(); g.fill();
    }
    const px = Math.round((state.time / total) * w);
    g.fillStyle = COLORS.playhead;
    g.fillRect(px, 0, Math.max(1, ratio), h);
  }

  function timelineClick(event) {
    if (!state.detail) return;
    const rect = $('timeline').getBoundingClientRect();
    const frac = Math.max(0, Math.min(1, (event.clientX - rect.left) / rect.width));
    const total = duration();
    // a click near a finding's marker seeks to the finding
    const near = state.detail.findings.find((f) => Math.abs(f.start / total - frac) * rect.width <= 6);
    if (near) state.selectedFinding = near.id;
    seek(near ? near.start : frac * total);
  }

  // ------------------------------------------------------------------ export
  function exportEvidence() {
    if (!state.detail) return;
    $('export-state').textContent = 'Preparing evidence…';
    state.pendingExport = state.detail.call.id;
    link.send('qa_export', { call_id: state.detail.call.id });
  }

  function download(msg) {
    if (msg.call_id !== state.pendingExport) return;
    state.pendingExport = null;
    const a = el('a', { href: msg.url, download: `callshield-evidence-${msg.call_id}.zip`, class: 'hidden' });
    document.body.appendChild(a);
    a.click();
    a.remove();
    $('export-state').textContent = 'Evidence zip downloaded; check it with "callshield verify".';
  }

  // ------------------------------------------------------------------ messages
  function onMessage(msg) {
    switch (msg.type) {
      case 'session':
        $('who').textContent = `${msg.user} (${msg.role})`;
        loadList();
        break;
      case 'qa_calls':
        renderList(msg);
        break;
      case 'qa_call':
        renderCall(msg.detail);
        break;
      case 'qa_marked': {
        if (!state.detail) break;
        const f = state.detail.findings.find((x) => x.id === msg.mark.finding_id);
        if (f) { f.mark = msg.mark; renderFindings(); }
        const row = state.list.find((c) => c.id === msg.mark.call_id);
        if (row && msg.call_marked !== undefined) { row.marked = msg.call_marked; }
        break;
      }
      case 'qa_link':
        download(msg);
        break;
      case 'error':
        if (state.pendingExport) { $('export-state').textContent = `Export refused: ${msg.message}`; state.pendingExport = null; }
        break;
      default:
        break; // live events of the supervisor dashboard are not shown here
    }
  }

  $('filters').addEventListener('submit', (event) => { event.preventDefault(); loadList(); });
  $('logout').addEventListener('click', () => link.logout());
  $('export').addEventListener('click', exportEvidence);
  $('timeline').addEventListener('click', timelineClick);
  const audio = $('audio');
  audio.addEventListener('timeupdate', () => follow(audio.currentTime, false));
  audio.addEventListener('seeked', () => follow(audio.currentTime, false));
  audio.addEventListener('loadedmetadata', drawTimeline);
  window.addEventListener('resize', drawTimeline);
  link.start();
})();
