/* Login: one websocket request; the session token goes to sessionStorage and
 * the page moves to the role's home. */
'use strict';

(() => {
  const form = document.getElementById('login-form');
  const error = document.getElementById('login-error');
  const button = document.getElementById('sign-in');
  const notice = sessionStorage.getItem(CS.NOTICE_KEY);  // why the last page was signed out
  if (notice) { error.textContent = notice; sessionStorage.removeItem(CS.NOTICE_KEY); }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    error.textContent = '';
    button.disabled = true;
    const ws = new WebSocket(CS.socketUrl());
    ws.onopen = () => ws.send(JSON.stringify({
      v: 1, type: 'login', ref: 'login',
      user: document.getElementById('user').value.trim(),
      password: document.getElementById('password').value,
    }));
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      if (msg.type === 'session') {
        sessionStorage.setItem(CS.TOKEN_KEY, msg.token);
        ws.close();
        location.assign(CS.HOME[msg.role] || '/');
      } else if (msg.type === 'error') {
        error.textContent = msg.message || 'Sign-in failed';
        button.disabled = false;
        ws.close();
      }
    };
    ws.onerror = () => { error.textContent = 'Cannot reach the console'; button.disabled = false; };
  });
})();
