/* Partner screen: the partner's current call only. Warnings as the ladder
 * rises (with the sentence to say), the banner when a supervisor authorizes
 * ending the call, and the "need help" button. */
'use strict';

(() => {
  const { el, clear, levelBadge, LEVEL_NAMES } = CS;
  const state = { call: null, levels: [], authorization: null, help: null, helpSending: false, helpError: '' };

  const $ = (id) => document.getElementById(id);

  function render() {
    const call = state.call;
    const level = call ? call.level : 'none';
    const badge = $('call-level');
    badge.className = `level level-${Object.prototype.hasOwnProperty.call(LEVEL_NAMES, level) ? level : 'none'} big-level`;
    badge.textContent = LEVEL_NAMES[level] || 'Normal';
    if (!call) {
      $('call-state').textContent = 'No active call';
      $('call-meta').textContent = 'Warnings for your calls appear here.';
    } else {
      const lost = call.end_reason === 'lost';
      $('call-state').textContent = lost ? 'Monitoring lost' : call.ended_at ? 'Call ended' : 'On a call';
      const seat = call.seat ? `Seat ${call.seat}` : '';
      $('call-meta').textContent = [seat, `started ${CS.clock(call.started_at)}`, lost ? 'callshield stopped hearing this call: no warnings will appear for it' : call.ended_at ? `length ${CS.seconds(call.length)}` : ''].filter(Boolean).join(' · ');
    }

    const banner = $('auth-banner');
    const auth = state.authorization;
    banner.classList.toggle('hidden', !auth);
    if (auth) {
      const over = Boolean(call && call.ended_at);  // the call is over: the banner records it, it does not ask for anything
      banner.classList.toggle('over', over);
      banner.setAttribute('role', over ? 'status' : 'alert');
      $('auth-title').textContent = over ? 'Ending this call was authorized' : 'You may end this call';
      $('auth-text').textContent = over
        ? `${auth.by} authorized ending this call at ${CS.clock(auth.authorized_at)}. The call has ended.`
        : `${auth.by} authorized ending this call at ${CS.clock(auth.authorized_at)}. You may close the call politely now.`;
      $('auth-reason').textContent = `Reason: ${auth.reason}`;
    }

    const list = clear($('warnings'));
    const shown = state.levels.slice().reverse();
    $('warning-count').textContent = shown.length ? `${shown.length}` : '';
    if (!shown.length) list.appendChild(el('p', { class: 'empty' }, 'No warnings on this call.'));
    for (const w of shown) {
      list.appendChild(el('article', { class: `warning level-${w.level}-w` },
        el('div', { class: 'card-top' }, levelBadge(w.level)),
        w.suggestion ? el('div', { class: 'say' }, w.suggestion) : null,
        el('div', { class: 'why' }, w.reason)));
    }

    renderHelp();
  }

  // "Need help": sending, sent (the button says so until a supervisor takes it), taken; back to the start after the call.
  function renderHelp() {
    const help = state.help;
    const helpState = $('help-state');
    const button = $('help-button');
    helpState.className = 'help-state';
    button.disabled = state.helpSending || Boolean(help && !help.acknowledged_by);
    button.textContent = help && !help.acknowledged_by ? 'Help requested' : 'Need help';
    if (help && help.acknowledged_by) {
      helpState.textContent = `${help.acknowledged_by} is coming to help you.`;
      helpState.classList.add('taken');
    } else if (help) {
      helpState.textContent = `Sent at ${CS.clock(help.created_at)}: the supervisors have been told. Waiting for one of them to take it…`;
      helpState.classList.add('sent');
    } else if (state.helpSending) {
      helpState.textContent = 'Calling a supervisor…';
    } else if (state.helpError) {
      helpState.textContent = state.helpError;
    } else {
      helpState.textContent = 'Press to call a supervisor to your call.';
    }
  }

  function setCall(call) {
    // An older call that ended (or whose monitoring was lost) never replaces the one shown.
    if (state.call && state.call.id !== call.id && call.ended_at && (call.end_reason === 'lost' || call.started_at < state.call.started_at)) return;
    if (!state.call || state.call.id !== call.id) {
      state.levels = [];
      state.authorization = null;
      resetHelp();
    } else if (call.ended_at && !state.call.ended_at) {
      resetHelp();  // the call is over: the button is ready for the next one
    }
    state.call = call;
  }

  function resetHelp() {
    state.help = null;
    state.helpSending = false;
    state.helpError = '';
  }

  function onMessage(msg) {
    switch (msg.type) {
      case 'session':
        $('who').textContent = msg.user;
        break;
      case 'snapshot':
        state.call = msg.calls[0] || null;
        state.levels = msg.levels.slice();
        state.authorization = msg.authorizations[0] || null;
        resetHelp();
        break;
      case 'call':
        setCall(msg.call);
        break;
      case 'level':
        if (!state.call || msg.level.call_id !== state.call.id) return;
        if (!state.levels.some((l) => l.id === msg.level.id)) state.levels.push(msg.level);
        break;
      case 'authorization':
        if (state.call && msg.authorization.call_id === state.call.id) state.authorization = msg.authorization;
        break;
      case 'help':
        // a request from an ended call, not taken, is not shown on the next one
        if (state.call && state.call.ended_at && !msg.help.acknowledged_by && !state.helpSending) return;
        state.help = msg.help;
        state.helpSending = false;
        break;
      case 'error':
        state.helpSending = false;
        state.helpError = msg.message;
        break;
      default:
        return;
    }
    render();
  }

  const link = new CS.Link({ page: '/partner', onMessage, onStatus: CS.statusPill($('status')) });
  $('logout').addEventListener('click', () => link.logout());
  $('help-button').addEventListener('click', () => {
    state.helpSending = true;
    state.helpError = '';
    link.send('need_help', { note: '' });
    renderHelp();
  });
  link.start();
})();
