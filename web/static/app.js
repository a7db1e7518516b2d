/* CEMP web UI: progressive enhancement only. Every page works without this file; it adds live block
   updates (server-sent events), charts (uPlot, vendored), and the in-browser Merkle proof check. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var lang = document.documentElement.lang.indexOf("zh") === 0 ? "zh-CN" : "en-GB";
  var numFmt = new Intl.NumberFormat(lang);

  /* ---- SHA-256: WebCrypto where the page is a secure context, else a small pure-JS fallback ---- */
  function sha256js(bytes) {
    var K = [0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,
      0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,
      0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,
      0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,
      0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,
      0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,
      0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
    var H = [0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19];
    var n = bytes.length, total = ((n + 9 + 63) >> 6) << 6, m = new Uint8Array(total), dv = new DataView(m.buffer);
    m.set(bytes); m[n] = 0x80;
    dv.setUint32(total - 8, Math.floor(n / 0x20000000)); dv.setUint32(total - 4, (n << 3) >>> 0);
    var w = new Uint32Array(64);
    for (var off = 0; off < total; off += 64) {
      for (var i = 0; i < 16; i++) w[i] = dv.getUint32(off + 4 * i);
      for (i = 16; i < 64; i++) {
        var a0 = w[i - 15], a1 = w[i - 2];
        var s0 = ((a0 >>> 7) | (a0 << 25)) ^ ((a0 >>> 18) | (a0 << 14)) ^ (a0 >>> 3);
        var s1 = ((a1 >>> 17) | (a1 << 15)) ^ ((a1 >>> 19) | (a1 << 13)) ^ (a1 >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
      for (i = 0; i < 64; i++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        h = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      H = [H[0] + a, H[1] + b, H[2] + c, H[3] + d, H[4] + e, H[5] + f, H[6] + g, H[7] + h].map(function (x) { return x >>> 0; });
    }
    var out = new Uint8Array(32), ov = new DataView(out.buffer);
    H.forEach(function (x, j) { ov.setUint32(4 * j, x); });
    return out;
  }
  function sha256(bytes) {
    if (window.crypto && crypto.subtle && window.isSecureContext) {
      return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
    }
    return Promise.resolve(sha256js(bytes));
  }
  function hex2bytes(h) {
    var out = new Uint8Array(h.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
    return out;
  }
  function bytes2hex(b) {
    return Array.prototype.map.call(b, function (x) { return ("0" + x.toString(16)).slice(-2); }).join("");
  }
  function cat(tag, x, y) {
    var out = new Uint8Array(1 + x.length + (y ? y.length : 0));
    out[0] = tag; out.set(x, 1); if (y) out.set(y, 1 + x.length);
    return out;
  }
  /* RFC 9162 section 2.1.3.2, as node/merkle.py verify_inclusion: leaf 0x00||tx, node 0x01||left||right. */
  function merkleRoot(leaf, index, size, path, leafHash) {
    /* a tx whose payload is withheld from this viewer is checked from its leaf hash */
    return (leaf ? sha256(cat(0, leaf)) : Promise.resolve(leafHash)).then(function (r) {
      var fn = index, sn = size - 1, i = 0;
      function step(r) {
        if (i === path.length) return sn === 0 ? r : null;
        if (sn === 0) return null;
        var p = path[i++], next;
        if ((fn & 1) || fn === sn) {
          next = sha256(cat(1, p, r));
          if (!(fn & 1)) { while (fn && !(fn & 1)) { fn >>= 1; sn >>= 1; } }
        } else {
          next = sha256(cat(1, r, p));
        }
        fn >>= 1; sn >>= 1;
        return next.then(step);
      }
      return step(r);
    });
  }
  window.cempSha256js = function (hex) { return bytes2hex(sha256js(hex2bytes(hex))); };
  window.cempMerkleRoot = function (leafHex, index, size, pathHex, leafHashHex) {
    return merkleRoot(leafHex ? hex2bytes(leafHex) : null, index, size, pathHex.map(hex2bytes),
      leafHashHex ? hex2bytes(leafHashHex) : null).then(function (r) { return r ? bytes2hex(r) : null; });
  };

  function setupVerify() {
    var box = document.getElementById("verify"), btn = document.getElementById("verify-btn");
    var data = document.getElementById("proof-data");
    if (!box || !btn || !data) return;
    var proof = JSON.parse(data.textContent);
    var out = document.getElementById("verify-out");
    btn.hidden = false;
    btn.addEventListener("click", function () {
      out.textContent = "…";
      window.cempMerkleRoot(proof.leaf, proof.index, proof.size, proof.path, proof.leaf_hash).then(function (root) {
        var ok = root === proof.root;
        out.className = ok ? "good" : "bad";
        out.textContent = (ok ? "✔ " + box.dataset.ok : "✘ " + box.dataset.bad) + " " + box.dataset.computed + ": " + (root || "–");
        box.dataset.result = ok ? "ok" : "bad";
      });
    });
  }

  /* ---- live blocks over server-sent events ---- */
  function setupLive() {
    var body = document.getElementById("live-blocks");
    if (!body || !window.EventSource) return;
    var keep = Math.max(body.rows.length, 12);  // the overview lists 12 blocks; a young chain fills up first
    var es = new EventSource(body.dataset.live);
    var dot = document.getElementById("live-on");
    es.addEventListener("open", function () { if (dot) dot.hidden = false; });
    es.addEventListener("error", function () { if (dot) dot.hidden = true; });
    es.addEventListener("block", function (ev) {
      var msg = JSON.parse(ev.data);
      if (body.querySelector('tr[data-height="' + msg.height + '"]')) return;
      var first = body.rows[0];
      if (first && Number(first.dataset.height) > msg.height) return;
      body.insertAdjacentHTML("afterbegin", msg.html);
      body.rows[0].classList.add("fresh");
      while (body.rows.length > keep) body.deleteRow(body.rows.length - 1);
      var h = document.getElementById("stat-height");
      if (h) h.textContent = numFmt.format(msg.height);
    });
    window.addEventListener("pagehide", function () { es.close(); });
  }

  /* ---- charts (uPlot) ---- */
  function tzDate(tz) {
    return function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz); };
  }
  /* x-axis labels in the page's language and the site's time zone (uPlot's default is US-style). */
  function timeAxis(tz) {
    var hm = new Intl.DateTimeFormat(lang, { timeZone: tz, hour: "2-digit", minute: "2-digit", hour12: false });
    var hms = new Intl.DateTimeFormat(lang, { timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    var md = new Intl.DateTimeFormat(lang, { timeZone: tz, month: "numeric", day: "numeric" });
    return {
      space: 64,
      values: function (u, splits) {
        var span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
        return splits.map(function (ts) {
          var d = new Date(ts * 1000);
          if (span > 3 * 86400) return md.format(d);
          if (span > 86400) return md.format(d) + " " + hm.format(d);
          return span < 600 ? hms.format(d) : hm.format(d);
        });
      }
    };
  }
  function width(el) { return Math.max(280, Math.min(el.clientWidth || 600, 1100)); }

  function setupActivity() {
    var box = document.getElementById("activity");
    if (!box || !window.uPlot) return;
    var labels = JSON.parse(box.dataset.labels);
    var tries = 0;
    function load() {
      return fetch(box.dataset.src).then(function (r) { return r.json(); }).then(function (d) {
        // a node that just started summarises a busy hour over a few calls
        if (!d.complete && ++tries < 20) return new Promise(function (ok) { setTimeout(ok, 300); }).then(load);
        return d;
      });
    }
    load().then(function (d) {
      ["blocks", "txs", "readings"].forEach(function (key, i) {
        var fig = document.createElement("figure");
        fig.className = "mini";
        fig.setAttribute("data-chart", key);
        var cap = document.createElement("figcaption");
        var sum = d[key].reduce(function (a, b) { return a + b; }, 0);
        cap.textContent = labels[key] + " · Σ " + numFmt.format(sum);
        fig.appendChild(cap);
        box.appendChild(fig);
        var colors = ["#0b6e4f", "#1f5fa8", "#8a4b08"];
        new uPlot({
          width: width(box) > 700 ? Math.floor((width(box) - 32) / 3) : width(box), height: 150,
          tzDate: tzDate(document.body.dataset.tz || "Asia/Shanghai"),
          legend: { show: false }, cursor: { drag: { x: false, y: false } },
          scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } } },
          axes: [timeAxis(document.body.dataset.tz || "Asia/Shanghai"), { size: 48, values: function (u, vals) { return vals.map(function (v) { return numFmt.format(v); }); } }],
          series: [{}, { label: labels[key], stroke: colors[i], fill: colors[i] + "33", width: 1.5,
                         paths: uPlot.paths.bars({ size: [0.8, 20] }) }]
        }, [d.minutes, d[key]], fig);
      });
    });
  }

  function setupDeviceChart() {
    var fig = document.getElementById("device-chart");
    var data = document.getElementById("chart-data");
    if (!fig || !data || !window.uPlot) return;
    var s = JSON.parse(data.textContent);
    if (!s.t.length) return;
    var initial = s, u = null, loading = false;
    var fmt = new Intl.NumberFormat(lang, { maximumFractionDigits: 3 });
    function cols(x) { return x.counter ? [x.t, x.mean] : [x.t, x.mean, x.min, x.max]; }
    var series = [{ label: fig.dataset.timeLabel }, { label: fig.dataset.label + " (" + s.unit + ")", stroke: "#0b6e4f", width: 1.5,
                        value: function (u, v) { return v == null ? "–" : fmt.format(v); } }];
    if (s.counter) {
      series[1].fill = "#0b6e4f33";
      series[1].paths = uPlot.paths.stepped({ align: 1 });
    } else {
      var spread = s.resolution !== "raw";
      series.push({ label: fig.dataset.min, stroke: "#5b8db8", width: 1, show: spread, value: function (u, v) { return v == null ? "–" : fmt.format(v); } });
      series.push({ label: fig.dataset.max, stroke: "#b85b5b", width: 1, show: spread, value: function (u, v) { return v == null ? "–" : fmt.format(v); } });
    }
    var holder = fig.querySelector(".plot-box");
    u = new uPlot({
      width: width(holder), height: 300,
      tzDate: tzDate(fig.dataset.tz),
      series: series,
      bands: s.counter ? [] : [{ series: [3, 2], fill: "#0b6e4f1a" }],
      axes: [timeAxis(fig.dataset.tz), { size: 64, values: function (u, vals) { return vals.map(function (v) { return fmt.format(v); }); } }],
      hooks: {
        setSelect: [function (u) {
          if (u.select.width < 5) return;
          var lo = u.posToVal(u.select.left, "x"), hi = u.posToVal(u.select.left + u.select.width, "x");
          if (loading) return;
          loading = true;
          fig.setAttribute("aria-busy", "true");
          var url = fig.dataset.seriesUrl + "&from=" + Math.floor(lo * 1000) + "&to=" + Math.ceil(hi * 1000);
          fetch(url).then(function (r) { return r.json(); }).then(function (z) {
            if (z.t && z.t.length) { u.setData(cols(z)); showSpread(z); fig.dataset.zoomed = z.resolution; }
          }).finally(function () { loading = false; fig.removeAttribute("aria-busy"); u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false); });
        }]
      },
      cursor: { drag: { x: true, y: false, setScale: false } }
    }, cols(s), holder);
    function showSpread(x) {
      if (x.counter) return;
      u.setSeries(2, { show: x.resolution !== "raw" });
      u.setSeries(3, { show: x.resolution !== "raw" });
    }
    holder.addEventListener("dblclick", function () { u.setData(cols(initial)); showSpread(initial); delete fig.dataset.zoomed; });
    fig.dataset.rendered = "1";
    window.addEventListener("resize", function () { u.setSize({ width: width(holder), height: 300 }); });
  }

  /* carbon portrait: emissions per breakdown bucket (location- and market-based bars, electricity line) */
  function setupCarbonChart() {
    var fig = document.getElementById("carbon-chart");
    var data = document.getElementById("carbon-data");
    if (!fig || !data || !window.uPlot) return;
    var d = JSON.parse(data.textContent);
    if (!d.labels.length) return;
    var names = JSON.parse(fig.dataset.labels);
    var fmt = new Intl.NumberFormat(lang, { maximumFractionDigits: 3 });
    var xs = d.labels.map(function (_, i) { return i; });
    var holder = fig.querySelector(".plot-box");
    function val(u, v) { return v == null ? "–" : fmt.format(v); }
    var bars = uPlot.paths.bars({ size: [0.4, 28], align: -1 }), bars2 = uPlot.paths.bars({ size: [0.4, 28], align: 1 });
    var u = new uPlot({
      width: width(holder), height: 280,
      scales: { x: { time: false, range: function () { return [-0.6, xs.length - 0.4]; } },
                t: { range: function (u, lo, hi) { return [0, Math.max(hi * 1.1, 1e-6)]; } },
                e: { range: function (u, lo, hi) { return [0, Math.max(hi * 1.1, 1e-6)]; } } },
      series: [
        { label: fig.dataset.xLabel || "", value: function (u, i) { return i == null ? "–" : d.labels[i]; } },
        { label: names.loc, scale: "t", stroke: "#0b6e4f", fill: "#0b6e4fcc", width: 1, paths: bars, value: val },
        { label: names.mkt, scale: "t", stroke: "#3f8f6b", fill: "#3f8f6b88", width: 1, paths: bars2, value: val },
        { label: names.energy, scale: "e", stroke: "#1f5fa8", width: 2, value: val, points: { show: xs.length < 40 } }
      ],
      axes: [
        { values: function (u, splits) { return splits.map(function (i) { return Number.isInteger(i) && d.labels[i] ? d.labels[i] : ""; }); },
          space: 60, incrs: [1, 2, 5, 7, 10, 14, 30, 60, 90] },
        { scale: "t", size: 56, values: function (u, v) { return v.map(function (x) { return fmt.format(x); }); } },
        { scale: "e", side: 1, size: 56, grid: { show: false }, values: function (u, v) { return v.map(function (x) { return fmt.format(x); }); } }
      ],
      cursor: { drag: { x: false, y: false } }
    }, [xs, d.co2_location_t, d.co2_market_t, d.energy_mwh], holder);
    fig.dataset.rendered = "1";
    window.addEventListener("resize", function () { u.setSize({ width: width(holder), height: 280 }); });
  }

  /* carbon portrait: the storage tank's charging plan (boiler power bars, stored heat and price lines) */
  function setupPlanChart() {
    var fig = document.getElementById("plan-chart");
    var data = document.getElementById("plan-data");
    if (!fig || !data || !window.uPlot) return;
    var d = JSON.parse(data.textContent);
    if (!d || !d.labels.length) return;
    var names = JSON.parse(fig.dataset.labels);
    var fmt = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
    var fmtp = new Intl.NumberFormat(lang, { maximumFractionDigits: 4 });
    var xs = d.labels.map(function (_, i) { return i; });
    var holder = fig.querySelector(".plot-box");
    function val(u, v) { return v == null ? "–" : fmt.format(v); }
    var u = new uPlot({
      width: width(holder), height: 260,
      scales: { x: { time: false, range: function () { return [-0.6, xs.length - 0.4]; } },
                kw: { range: function (u, lo, hi) { return [0, Math.max(hi * 1.1, 1e-6)]; } },
                p: { range: function (u, lo, hi) { return [0, Math.max(hi * 1.2, 1e-6)]; } } },
      series: [
        { label: fig.dataset.xLabel || "", value: function (u, i) { return i == null ? "–" : d.labels[i]; } },
        { label: names.power, scale: "kw", stroke: "#0b6e4f", fill: "#0b6e4fbb", width: 1, paths: uPlot.paths.bars({ size: [0.7, 40] }), value: val },
        { label: names.stored, scale: "kw", stroke: "#b35c00", width: 2, value: val },
        { label: names.price, scale: "p", stroke: "#1f5fa8", width: 2, dash: [6, 4], paths: uPlot.paths.stepped({ align: 1 }), value: function (u, v) { return v == null ? "–" : fmtp.format(v); } }
      ],
      axes: [
        { values: function (u, splits) { return splits.map(function (i) { return Number.isInteger(i) && d.labels[i] ? d.labels[i] : ""; }); },
          space: 48, incrs: [1, 2, 3, 6] },
        { scale: "kw", size: 60, values: function (u, v) { return v.map(function (x) { return fmt.format(x); }); } },
        { scale: "p", side: 1, size: 52, grid: { show: false }, values: function (u, v) { return v.map(function (x) { return fmtp.format(x); }); } }
      ],
      cursor: { drag: { x: false, y: false } }
    }, [xs, d.power_kw, d.stored_kwh, d.price], holder);
    fig.dataset.rendered = "1";
    window.addEventListener("resize", function () { u.setSize({ width: width(holder), height: 260 }); });
  }

  function ready() {
    setupVerify();
    setupLive();
    setupActivity();
    setupDeviceChart();
    setupCarbonChart();
    setupPlanChart();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready); else ready();
})();
