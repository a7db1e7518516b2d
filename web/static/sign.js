/* Signing alarm and work-order steps in the browser with the signed-in person's own Ed25519 key.
 *
 * The key is imported once, on the sign-in page, from the person's CEMP key file (format cemp-ed25519-v1, seed
 * not passphrase-protected) as a NON-extractable WebCrypto CryptoKey and kept in IndexedDB under its public key;
 * it is never sent anywhere. A step form (data-sign, data-signer) is posted to its ".../sign" URL, which answers
 * the exact bytes the tx signature covers; the browser signs them and submits the form with the nonce and the
 * signature; the node rebuilds the same bytes, checks the signature and admits the tx. Without WebCrypto Ed25519
 * or IndexedDB the form posts unsigned and the node answers with the command line that takes the step.
 */
(function () {
  'use strict';
  var DB = 'cemp-signer', STORE = 'keys';
  var zh = (document.documentElement.lang || '').indexOf('zh') === 0;
  var MSG = {
    encrypted: ['This key file is passphrase-protected; the browser cannot unlock it. Use the command line shown under each form, or a key file without a passphrase.',
      '此密钥文件有口令保护，浏览器无法解锁。请使用每个表单下的命令行，或使用无口令的密钥文件。'],
    notkey: ['Not a CEMP key file (cemp-ed25519-v1).', '不是 CEMP 密钥文件（cemp-ed25519-v1）。'],
    other: ['This key file is for another key than the one you signed in with.', '此密钥文件与您登录所用的密钥不同。'],
    bad: ['The key file is damaged: its seed does not match its public key.', '密钥文件已损坏：种子与公钥不符。'],
    nocrypto: ['This browser cannot sign with Ed25519 here (WebCrypto needs HTTPS or this computer); use the command line.',
      '此浏览器在此无法用 Ed25519 签名（WebCrypto 需要 HTTPS 或本机访问）；请使用命令行。'],
    nokey: ['No key loaded in this browser: load your key file on the sign-in page (/signin), or use the command line below.',
      '此浏览器中尚未加载密钥：请在登录页（/signin）加载您的密钥文件，或使用下面的命令行。'],
    signing: ['Signing with your key…', '正在用您的密钥签名…'],
    failed: ['Refused', '被拒绝']
  };
  function say(k) { return MSG[k][zh ? 1 : 0]; }

  function usable() {
    return !!(window.crypto && window.crypto.subtle && window.indexedDB);
  }
  function hex2bytes(h) {
    var out = new Uint8Array(h.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
    return out;
  }
  function bytes2hex(b) {
    return Array.prototype.map.call(new Uint8Array(b), function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }
  function b64url(bytes) {
    var s = '';
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function db() {
    return new Promise(function (resolve, reject) {
      var r = indexedDB.open(DB, 1);
      r.onupgradeneeded = function () { r.result.createObjectStore(STORE); };
      r.onsuccess = function () { resolve(r.result); };
      r.onerror = function () { reject(r.error); };
    });
  }
  function op(mode, fn) {
    return db().then(function (d) {
      return new Promise(function (resolve, reject) {
        var req = fn(d.transaction(STORE, mode).objectStore(STORE));
        req.onsuccess = function () { resolve(req.result); };
        req.onerror = function () { reject(req.error); };
      });
    });
  }
  function getKey(pub) { return op('readonly', function (s) { return s.get(pub); }); }
  function putKey(pub, key) { return op('readwrite', function (s) { return s.put(key, pub); }); }
  function delKey(pub) { return op('readwrite', function (s) { return s.delete(pub); }); }

  /* A key file -> a non-extractable signing key, checked by signing a probe and verifying it with the public key. */
  function importKeyFile(text, expectPub) {
    var doc;
    try { doc = JSON.parse(text); } catch (e) { return Promise.reject(new Error(say('notkey'))); }
    if (!doc || doc.format !== 'cemp-ed25519-v1') return Promise.reject(new Error(say('notkey')));
    if (doc.encrypted_seed) return Promise.reject(new Error(say('encrypted')));
    var seed = String(doc.seed || ''), pub = String(doc.public_key || '');
    if (!/^[0-9a-f]{64}$/.test(seed) || !/^[0-9a-f]{64}$/.test(pub)) return Promise.reject(new Error(say('notkey')));
    if (pub !== expectPub) return Promise.reject(new Error(say('other')));
    var jwk = { kty: 'OKP', crv: 'Ed25519', d: b64url(hex2bytes(seed)), x: b64url(hex2bytes(pub)) };
    var probe = new TextEncoder().encode('CEMP/browser-key-probe');
    var key;
    return crypto.subtle.importKey('jwk', jwk, { name: 'Ed25519' }, false, ['sign'])
      .then(function (k) { key = k; return crypto.subtle.sign({ name: 'Ed25519' }, k, probe); })
      .then(function (sig) {
        return crypto.subtle.importKey('raw', hex2bytes(pub), { name: 'Ed25519' }, false, ['verify'])
          .then(function (pk) { return crypto.subtle.verify({ name: 'Ed25519' }, pk, sig, probe); });
      })
      .then(function (ok) {
        if (!ok) throw new Error(say('bad'));
        return putKey(pub, key);
      });
  }

  function setupSignin() {
    var box = document.getElementById('signer');
    if (!box) return;
    var pub = box.getAttribute('data-signer');
    var input = document.getElementById('key-file');
    var status = document.getElementById('key-status');
    var forget = document.getElementById('key-forget');
    if (!usable()) { status.textContent = say('nocrypto'); return; }
    function show() {
      return getKey(pub).then(function (k) {
        status.textContent = box.getAttribute(k ? 'data-msg-ready' : 'data-msg-none');
        status.className = k ? 'good' : 'muted';
        forget.hidden = !k;
      });
    }
    input.disabled = false;
    input.addEventListener('change', function () {
      var f = input.files && input.files[0];
      if (!f) return;
      if (f.size > 4096) { status.textContent = say('notkey'); status.className = 'bad'; return; }
      f.text().then(function (text) { return importKeyFile(text, pub); })
        .then(show)
        .catch(function (e) { status.textContent = (e && e.message) || String(e); status.className = 'bad'; })
        .then(function () { input.value = ''; });
    });
    forget.addEventListener('click', function () { delKey(pub).then(show); });
    show().catch(function () { status.textContent = say('nocrypto'); });
  }

  function hidden(form, name, value) {
    var el = form.querySelector('input[type=hidden][name="' + name + '"]');
    if (!el) { el = document.createElement('input'); el.type = 'hidden'; el.name = name; form.appendChild(el); }
    el.value = value;
  }

  function setupForms() {
    var forms = document.querySelectorAll('form.act[data-sign]');
    if (!forms.length || !usable()) return;
    Array.prototype.forEach.call(forms, function (form) {
      var status = form.querySelector('.sign-status');
      var cli = form.querySelector('details.cli');
      var busy = false;
      function fail(text) {
        busy = false;
        status.textContent = text;
        status.className = 'sign-status flash bad';
        if (cli) cli.open = true;
      }
      form.addEventListener('submit', function (ev) {
        if (form.getAttribute('data-signed') === '1') return;  /* the second, signed submission */
        ev.preventDefault();
        if (busy) return;
        busy = true;
        var pub = form.getAttribute('data-signer');
        status.textContent = say('signing');
        status.className = 'sign-status muted';
        getKey(pub).then(function (key) {
          if (!key) { fail(say('nokey')); return; }
          var body = new URLSearchParams(new FormData(form));
          return fetch(form.getAttribute('data-sign'), { method: 'POST', body: body, credentials: 'same-origin' })
            .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
            .then(function (res) {
              if (!res[0]) { fail(say('failed') + ': ' + (res[1].message || res[1].code)); return; }
              var j = res[1];
              return crypto.subtle.sign({ name: 'Ed25519' }, key, hex2bytes(j.sign_bytes)).then(function (sig) {
                hidden(form, 'nonce', String(j.nonce));
                hidden(form, 'signature', bytes2hex(sig));
                form.setAttribute('data-signed', '1');
                form.submit();
              });
            });
        }).catch(function (e) { fail((e && e.message) || String(e)); });
      });
    });
  }

  function ready() { setupSignin(); setupForms(); }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', ready);
  else ready();
})();
