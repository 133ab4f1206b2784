/* ykcproxy live console: plain JavaScript, no build step, no external asset.
 *
 * Data comes from the REST API of the same server (GET /piles, /piles/<id>/frames,
 * /sessions, /openapi.json, POST /proxy/<ft>) and live from the server-sent
 * event stream GET /events.  With an API token configured, the token is asked
 * once and kept in sessionStorage; it goes as "Authorization: Bearer" on
 * requests and as ?token= on the event stream (EventSource cannot set headers).
 */
"use strict";

(function () {
  var TOKEN_KEY = "ykcproxy.token";
  var MAX_FRAMES = 1000; // frames kept in the page for the pile on view
  var PILE_REFRESH_MS = 10000; // GET /piles again (gun states, last seen)
  var COMMANDS = ["34", "36", "92", "56", "12", "58"];
  var RATES = ["sharp", "peak", "flat", "valley"];

  var state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    ready: false, // the API answered (with the token, when one is needed)
    canCommand: false,
    piles: new Map(), // id -> pile record (state: online / offline / pending)
    view: null,
    pileId: null, // the pile whose frames are on view
    frames: [],
    selectedFrame: null,
    orders: new Map(), // tradeSeq -> order of the list on view
    orderQuery: null,
    orderNext: null,
    orderId: null,
    schemas: null, // ft -> {schema, example, summary, wait}
    events: null,
    eventsPile: null,
  };

  // ---- helpers -------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k === "text") node.textContent = v;
        else if (k === "className") node.className = v;
        else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.keys(v).forEach(function (d) { node.dataset[d] = v[d]; });
        else node.setAttribute(k, v === true ? "" : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      if (Array.isArray(child)) child.forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
      else node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function fill(node) { // node.replaceChildren with the non-null ones of the other arguments
    var kids = Array.prototype.slice.call(arguments, 1).filter(function (k) { return k !== null && k !== undefined && k !== false; });
    node.replaceChildren.apply(node, kids);
    return node;
  }

  function pad(n, w) { n = String(n); while (n.length < (w || 2)) n = "0" + n; return n; }

  function clock(ms) {
    if (ms === null || ms === undefined) return "";
    var d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }

  function dateTime(ms) {
    if (ms === null || ms === undefined) return "";
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function ago(ms) {
    if (!ms) return "";
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function scaled(raw) { // energy and amount are ×10000
    if (raw === null || raw === undefined) return "";
    return (raw / 10000).toFixed(4);
  }

  function short(value) {
    if (value === null || value === undefined) return "null";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function hexBytes(raw) {
    var out = [];
    for (var i = 0; i + 1 < raw.length; i += 2) out.push(raw.substr(i, 2).toUpperCase());
    return out;
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return Promise.resolve(legacyCopy(text));
  }

  function legacyCopy(text) { // plain http on a LAN address has no navigator.clipboard
    var area = el("textarea", { readonly: true, className: "offscreen" });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { area.remove(); }
  }

  function flash(node, text) {
    var old = node.textContent;
    node.textContent = text;
    node.classList.add("done");
    setTimeout(function () { node.textContent = old; node.classList.remove("done"); }, 1200);
  }

  // ---- the API -------------------------------------------------------------

  function NeedToken() { this.name = "NeedToken"; }

  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = "Bearer " + state.token;
    var init = { method: method, headers: headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
        if (response.status === 401) {
          askToken(state.token ? "The token was refused." : "");
          throw new NeedToken();
        }
        return { status: response.status, ok: response.ok, body: data };
      });
    });
  }

  function getJson(path) {
    return api("GET", path).then(function (r) {
      if (!r.ok) throw new Error((r.body && r.body.message) || ("HTTP " + r.status));
      return r.body;
    });
  }

  // ---- token ---------------------------------------------------------------

  function askToken(error) {
    state.ready = false;
    closeEvents();
    $("main").hidden = true;
    $("token-dialog").hidden = false;
    $("token-error").hidden = !error;
    $("token-error").textContent = error || "";
    $("token-input").value = "";
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token-dialog").hidden = true;
    start();
  });

  $("forget-token").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = "";
    askToken("");
  });

  // ---- the event stream ----------------------------------------------------

  function closeEvents() {
    if (state.events) state.events.close();
    state.events = null;
    setStream("down", "offline");
  }

  function setStream(cls, text) {
    var node = $("stream-state");
    node.className = "stream " + cls;
    node.textContent = text;
  }

  function openEvents() {
    var wanted = state.view === "pile" ? state.pileId : null;
    if (state.events && state.eventsPile === wanted && state.events.readyState !== EventSource.CLOSED) return;
    if (state.events) state.events.close();
    var params = [];
    if (state.token) params.push("token=" + encodeURIComponent(state.token));
    if (wanted) params.push("pile=" + encodeURIComponent(wanted));
    var source = new EventSource("/events" + (params.length ? "?" + params.join("&") : ""));
    state.events = source;
    state.eventsPile = wanted;
    setStream("connecting", "connecting");
    var opened = false;
    source.addEventListener("open", function () {
      setStream("up", "live");
      if (opened && state.events === source) { // back after a break: read again what was missed
        refreshPiles().catch(function () {});
        if (state.view === "pile") loadFrames();
      }
      opened = true;
    });
    source.addEventListener("error", function () {
      if (state.events !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (401, or a slow client dropped): check the token, then reconnect.
        setStream("down", "offline");
        setTimeout(function () {
          if (state.events !== source || !state.ready) return;
          api("GET", "/piles?limit=1").then(function () { state.events = null; openEvents(); refreshPiles(); })
            .catch(function () {});
        }, 3000);
      } else {
        setStream("connecting", "reconnecting");
      }
    });
    on(source, "hello", function (data) {
      state.canCommand = !!data.canCommand;
      $("access").hidden = false;
      $("access").textContent = state.canCommand ? "" : "read-only";
      $("access").hidden = state.canCommand;
      renderCommands();
    });
    on(source, "online", function (data) {
      var pile = state.piles.get(data.id) || { id: data.id };
      pile.state = "online";
      pile.remote = data.remote;
      pile.lastSeen = Date.now();
      pile.reason = null;
      state.piles.set(data.id, pile);
      schedulePileRefresh();
      pilesChanged(data.id);
    });
    on(source, "offline", function (data) {
      var pile = state.piles.get(data.id) || { id: data.id };
      if (pile.state === "pending" || pile.state === "online" || !pile.state) {
        pile.state = "offline";
        pile.remote = data.remote || pile.remote;
        pile.reason = data.reason || "";
        pile.offlineAt = Date.now();
        state.piles.set(data.id, pile);
        pilesChanged(data.id);
      }
    });
    on(source, "pending", function (data) {
      var pile = state.piles.get(data.id) || { id: data.id };
      if (pile.state !== "online") {
        pile.state = "pending";
        pile.remote = data.remote;
        pile.since = data.since;
        state.piles.set(data.id, pile);
        pilesChanged(data.id);
      }
    });
    on(source, "frame", function (frame) { frameArrived(frame); });
    on(source, "session", function (order) { orderArrived(order); schedulePileRefresh(); });
    on(source, "gun", function (data) { // a gun's state changed (when the server sends it)
      var pile = state.piles.get(data.id);
      if (!pile || !data.gun) return;
      pile.gunState = pile.gunState || {};
      var gun = pile.gunState[data.gun] = pile.gunState[data.gun] || {};
      ["gunStatus", "status", "plugged", "tradeSeq"].forEach(function (k) { if (data[k] !== undefined) gun[k] = data[k]; });
      pilesChanged(data.id);
    });
  }

  function on(source, name, handler) {
    source.addEventListener(name, function (ev) {
      if (state.events !== source) return;
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      handler(data);
    });
  }

  // ---- piles ---------------------------------------------------------------

  var refreshTimer = null;
  var lastRefresh = 0; // when GET /piles was last asked (ms)
  var refreshCost = 0; // how long it took (ms): a big fleet is asked less often

  function schedulePileRefresh() {
    if (refreshTimer) return;
    var gap = Math.max(300, 2 * refreshCost, lastRefresh + Math.max(2000, 5 * refreshCost) - Date.now());
    refreshTimer = setTimeout(function () { refreshTimer = null; refreshPiles().catch(function () {}); }, gap);
  }

  function refreshPiles() {
    var began = Date.now();
    lastRefresh = began;
    return Promise.all([getJson("/piles"), getJson("/piles?state=pending")]).then(function (got) {
      var online = new Set();
      got[0].forEach(function (p) {
        var pile = state.piles.get(p.id) || {};
        Object.assign(pile, p, { state: "online", reason: null });
        state.piles.set(p.id, pile);
        online.add(p.id);
      });
      var pending = new Set();
      got[1].forEach(function (p) {
        if (online.has(p.id)) return;
        var pile = state.piles.get(p.id) || {};
        Object.assign(pile, p, { state: "pending" });
        state.piles.set(p.id, pile);
        pending.add(p.id);
      });
      state.piles.forEach(function (pile, id) {
        if ((pile.state === "online" && !online.has(id)) || (pile.state === "pending" && !pending.has(id))) {
          pile.state = "offline";
          pile.offlineAt = pile.offlineAt || Date.now();
        }
      });
      refreshCost = Date.now() - began;
      pilesChanged(null);
    });
  }

  function pilesChanged(id) {
    renderCounts();
    if (state.view === "piles") renderPiles();
    if (state.view === "pile" && (id === null || id === state.pileId)) renderPileHead();
  }

  function renderCounts() {
    var n = { online: 0, pending: 0, offline: 0 };
    state.piles.forEach(function (p) { if (n[p.state] !== undefined) n[p.state]++; });
    $("count-online").textContent = n.online;
    $("count-pending").textContent = n.pending;
    $("count-offline").textContent = n.offline;
  }

  var GUN_STATUS = ["offline", "fault", "idle", "charging"]; // 0x13 status

  function gunCells(pile) {
    var guns = pile.gunState || {};
    var ids = Object.keys(guns).sort();
    if (!ids.length && pile.guns) {
      for (var i = 1; i <= pile.guns; i++) ids.push(pad(i));
    }
    return ids.map(function (gunId) {
      var g = guns[gunId] || {};
      var label;
      if (g.status !== undefined && g.status !== null) label = GUN_STATUS[g.status] || "status " + g.status;
      else if (g.gunStatus !== undefined) label = g.gunStatus ? "fault" : "normal";
      else label = "?";
      if (g.status !== undefined && g.gunStatus === 1 && g.status !== 1) label += ", fault";
      var parts = [el("span", { className: "gun-no", text: gunId }), " ",
        el("span", { className: "gun-status g-" + label.split(",")[0].replace(/\W/g, ""), text: label })];
      if (g.plugged) parts.push(el("span", { className: "plug", title: "gun plugged", text: "plugged" }));
      if (g.tradeSeq && !/^0+$/.test(g.tradeSeq)) {
        parts.push(el("a", { href: "#/order/" + g.tradeSeq, className: "trade", title: "current order " + g.tradeSeq, text: "…" + g.tradeSeq.slice(-8) }));
      }
      return el("span", { className: "gun", dataset: { gun: gunId }, title: "gunStatus (0x03): " + short(g.gunStatus) + ", status (0x13): " + short(g.status) }, parts);
    });
  }

  function pileMatches(pile, filter) {
    if (!filter) return true;
    var login = pile.login || {};
    var hay = [pile.id, pile.remote, pile.state, pile.reason, login.protocolVersion, login.programVersion,
      JSON.stringify(pile.gunState || {})].join(" ").toLowerCase();
    return filter.split(/\s+/).every(function (word) { return hay.indexOf(word) >= 0; });
  }

  function renderPiles() {
    var filter = $("pile-filter").value.trim().toLowerCase();
    var order = { online: 0, pending: 1, offline: 2 };
    var piles = Array.from(state.piles.values()).sort(function (a, b) {
      return (order[a.state] - order[b.state]) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
    var shown = piles.filter(function (p) { return pileMatches(p, filter); });
    var body = $("pile-rows");
    body.replaceChildren.apply(body, shown.slice(0, 2000).map(function (p) {
      var login = p.login || {};
      var seen = p.state === "offline" ? p.offlineAt : p.state === "pending" ? p.since : p.lastSeen;
      return el("tr", { className: "pile " + p.state, dataset: { pile: p.id, state: p.state } },
        el("td", null, el("span", { className: "badge " + p.state, title: p.reason || "", text: p.state })),
        el("td", null, el("a", { href: "#/pile/" + p.id, className: "pile-id", text: p.id })),
        el("td", { className: "mono", text: p.remote || "" }),
        el("td", { title: dateTime(seen), text: ago(seen) }),
        el("td", { className: "protocol", text: login.protocolVersion === undefined ? "" : String(login.protocolVersion) }),
        el("td", { text: login.softwareVersion || login.programVersion || "" }),
        el("td", { className: "guns" }, gunCells(p)));
    }));
    $("pile-empty").hidden = piles.length > 0;
    $("pile-shown").textContent = filter ? shown.length + " of " + piles.length + " shown" :
      (shown.length > 2000 ? "first 2000 of " + shown.length + " shown; filter to see others" : "");
  }

  $("pile-filter").addEventListener("input", renderPiles);

  // ---- one pile: its frames ------------------------------------------------

  function renderPileHead() {
    var pile = state.piles.get(state.pileId) || { id: state.pileId, state: "offline" };
    var login = pile.login || {};
    $("pile-title").textContent = pile.id;
    var badge = $("pile-state");
    badge.className = "badge " + (pile.state || "offline");
    badge.textContent = pile.state || "not connected";
    var info = [];
    if (pile.remote) info.push(pile.remote);
    if (login.protocolVersion !== undefined) info.push("protocol " + login.protocolVersion);
    var program = login.softwareVersion || login.programVersion;
    if (program) info.push("program " + program);
    if (pile.guns) info.push(pile.guns + " gun" + (pile.guns > 1 ? "s" : ""));
    if (pile.reason) info.push("offline: " + pile.reason);
    $("pile-info").textContent = info.join(" · ");
    $("pile-orders").href = "#/orders?pile=" + encodeURIComponent(pile.id);
  }

  function loadFrames() {
    var id = state.pileId;
    state.frames = [];
    state.selectedFrame = null;
    $("frame-rows").replaceChildren();
    $("frame-detail").hidden = true;
    return getJson("/piles/" + encodeURIComponent(id) + "/frames?limit=" + MAX_FRAMES).then(function (body) {
      if (state.pileId !== id) return;
      var live = state.frames; // frames of the stream that came while this was loading
      var last = body.frames.length ? body.frames[body.frames.length - 1] : null;
      state.frames = [];
      body.frames.forEach(addFrame);
      live.forEach(function (f) { if (!last || f.at > last.at || (f.at === last.at && f.raw !== last.raw)) addFrame(f); });
      renderFrameCount();
    }).catch(function (e) {
      if (e instanceof NeedToken) return;
      $("frame-count").textContent = "frame history: " + e.message;
    });
  }

  function frameArrived(frame) {
    if (frame.id !== undefined && state.piles.has(frame.id)) {
      var pile = state.piles.get(frame.id);
      if (frame.dir === "up") pile.lastSeen = frame.at;
      updateGunFromFrame(pile, frame);
    }
    if (state.view !== "pile" || frame.id !== state.pileId) return;
    addFrame(frame);
    renderFrameCount();
  }

  function updateGunFromFrame(pile, frame) {
    var f = frame.fields;
    var gunId = f && (f.gunId || f.gun);
    if (!f || frame.dir !== "up" || (frame.code !== "13" && frame.code !== "03") || !gunId) return;
    pile.gunState = pile.gunState || {};
    var gun = pile.gunState[gunId] = pile.gunState[gunId] || {};
    if (frame.code === "03" && f.gunStatus !== undefined) gun.gunStatus = f.gunStatus;
    if (frame.code === "13") {
      if (f.status !== undefined) gun.status = f.status;
      if (f.plugged !== undefined) gun.plugged = f.plugged;
      if (f.tradeSeq !== undefined) gun.tradeSeq = f.tradeSeq;
    }
  }

  function addFrame(frame) {
    state.frames.push(frame);
    var rows = $("frame-rows");
    rows.appendChild(frameRow(frame));
    while (state.frames.length > MAX_FRAMES) {
      var old = state.frames.shift();
      if (rows.firstChild) rows.removeChild(rows.firstChild);
      if (old === state.selectedFrame) { state.selectedFrame = null; $("frame-detail").hidden = true; }
    }
    if ($("frames-follow").checked) {
      var scroll = $("frames-scroll");
      scroll.scrollTop = scroll.scrollHeight;
    }
  }

  function renderFrameCount() {
    $("frame-count").textContent = state.frames.length + " frame" + (state.frames.length === 1 ? "" : "s");
  }

  function summary(fields) {
    if (!fields) return "";
    var text = Object.keys(fields).filter(function (k) { return k !== "id"; }).map(function (k) {
      return k + "=" + short(fields[k]);
    }).join(" ");
    return text.length > 160 ? text.slice(0, 157) + "…" : text;
  }

  var typeNames = {}; // code -> name, from the frames seen (an undecodable frame has none)

  function frameRow(frame) {
    if (frame.name && frame.code) typeNames[frame.code] = frame.name;
    var name = frame.name || (frame.code && typeNames[frame.code]) || "";
    var heartbeat = frame.code === "03" || frame.code === "04";
    var row = el("tr", {
      className: "frame " + frame.dir + (frame.error ? " bad" : "") + (heartbeat ? " heartbeat" : ""),
      dataset: { code: frame.code || "", dir: frame.dir, seq: frame.seq === null || frame.seq === undefined ? "" : String(frame.seq) },
      onclick: function () { selectFrame(frame, row); },
    },
    el("td", { className: "mono", title: dateTime(frame.at), text: clock(frame.at) }),
    el("td", { className: "dir", title: frame.dir === "up" ? "pile → platform" : "platform → pile", text: frame.dir === "up" ? "↑ up" : "↓ down" }),
    el("td", null, el("span", { className: "code mono", text: frame.code ? "0x" + frame.code : "" }), " ", name),
    el("td", { className: "mono", text: frame.seq === null || frame.seq === undefined ? "" : String(frame.seq) }),
    el("td", { className: "summary" },
      frame.error ? el("span", { className: "error-mark", title: frame.error, text: "✗ " + frame.error }) : null,
      frame.error ? " " : null,
      summary(frame.fields)),
    el("td", null, el("button", {
      type: "button", className: "copy", title: "copy the frame's hex",
      onclick: function (ev) { ev.stopPropagation(); var b = ev.currentTarget; copyText(frame.raw).then(function () { flash(b, "copied"); }); },
      text: "copy hex",
    })));
    row._frame = frame;
    return row;
  }

  function selectFrame(frame, row) {
    var rows = $("frame-rows").children;
    for (var i = 0; i < rows.length; i++) rows[i].classList.remove("selected");
    row.classList.add("selected");
    state.selectedFrame = frame;
    renderFrameDetail(frame);
  }

  function renderFrameDetail(frame) {
    var box = $("frame-detail");
    box.hidden = false;
    var bytes = hexBytes(frame.raw || "");
    var spans = frame.spans || [];
    var owner = new Array(bytes.length); // byte index -> field name
    spans.forEach(function (s) { for (var i = s.start; i < s.end && i < bytes.length; i++) owner[i] = s.field; });
    var byteNodes = bytes.map(function (b, i) {
      var cls = "byte";
      if (i === 0) cls += " start";
      else if (i === 1) cls += " length";
      else if (i === 2 || i === 3) cls += " seqb";
      else if (i === 4) cls += " flag";
      else if (i === 5) cls += " type";
      else if (i >= bytes.length - 2) cls += " crc";
      var attrs = { className: cls, dataset: { i: String(i) }, text: b };
      if (owner[i]) { attrs.dataset.field = owner[i]; attrs.title = owner[i]; }
      return el("span", attrs);
    });
    var hex = el("div", { className: "hex mono", id: "frame-hex" }, byteNodes.map(function (n, i) {
      return i ? [document.createTextNode(i % 16 ? " " : "\n"), n] : [n];
    }).reduce(function (a, b) { return a.concat(b); }, []));
    var fieldRows = [];
    if (frame.fields) {
      Object.keys(frame.fields).forEach(function (k) {
        fieldRows.push(el("tr", { className: "field", dataset: { field: k } },
          el("th", { text: k }), el("td", { className: "mono value", text: short(frame.fields[k]) })));
      });
    }
    var header = [
      el("b", { text: (frame.code ? "0x" + frame.code + " " : "") + (frame.name || "") }),
      " ", frame.dir === "up" ? "pile → platform" : "platform → pile",
      " · seq " + short(frame.seq) + " · " + dateTime(frame.at) + "." + pad(new Date(frame.at).getMilliseconds(), 3),
      " · " + bytes.length + " bytes",
    ];
    var copy = el("button", {
      type: "button", className: "copy", id: "detail-copy",
      onclick: function (ev) { var b = ev.currentTarget; copyText(frame.raw).then(function () { flash(b, "copied"); }); },
      text: "copy hex",
    });
    fill(box,
      el("div", { className: "detail-head" }, header, " ", copy),
      frame.error ? el("p", { className: "error-mark", text: "✗ " + frame.error }) : null,
      el("div", { className: "detail-body" },
        el("table", { className: "fields" }, el("tbody", null, fieldRows.length ? fieldRows :
          [el("tr", null, el("td", { className: "muted", text: frame.error ? "not decoded" : "no fields" }))])),
        hex));
    bindHighlight(box);
  }

  function bindHighlight(box) {
    function light(field, on) {
      if (!field) return;
      box.querySelectorAll('[data-field="' + CSS.escape(field) + '"]').forEach(function (n) {
        n.classList.toggle("hl", on);
      });
    }
    box.addEventListener("mouseover", function (ev) {
      var t = ev.target.closest ? ev.target.closest("[data-field]") : null;
      if (t) light(t.dataset.field, true);
    });
    box.addEventListener("mouseout", function (ev) {
      var t = ev.target.closest ? ev.target.closest("[data-field]") : null;
      if (t) light(t.dataset.field, false);
    });
  }

  $("frames-clear").addEventListener("click", function () {
    state.frames = [];
    $("frame-rows").replaceChildren();
    $("frame-detail").hidden = true;
    renderFrameCount();
  });
  $("frames-hide-heartbeat").addEventListener("change", function (ev) {
    $("frame-table").classList.toggle("no-heartbeat", ev.target.checked);
  });

  // ---- commands ------------------------------------------------------------

  function loadSchemas() {
    if (state.schemas) return Promise.resolve(state.schemas);
    return fetch("/openapi.json").then(function (r) { return r.json(); }).then(function (doc) {
      var out = {};
      COMMANDS.forEach(function (ft) {
        var path = doc.paths && doc.paths["/proxy/" + ft];
        var op = path && path.post;
        if (!op || !op.requestBody) return;
        var content = op.requestBody.content["application/json"];
        out[ft] = {
          schema: content.schema,
          example: content.example || {},
          summary: op.summary || ft,
          wait: (op.parameters || []).some(function (p) { return p.name === "wait"; }),
        };
      });
      state.schemas = out;
      return out;
    });
  }

  function tradeSeqFor(pileId, gunId) {
    var d = new Date();
    var stamp = pad(d.getFullYear() % 100) + pad(d.getMonth() + 1) + pad(d.getDate()) +
      pad(d.getHours()) + pad(d.getMinutes()) + pad(d.getSeconds());
    var counter = pad(Math.floor(Math.random() * 10000), 4);
    return (pileId || "00000000000000") + (gunId || "01") + stamp + counter;
  }

  function renderCommands() {
    var pane = $("commands");
    if (state.view !== "pile" || !state.canCommand) { pane.hidden = true; return; }
    pane.hidden = false;
    loadSchemas().then(function (schemas) {
      var box = $("command-forms");
      if (box.dataset.pile === state.pileId && box.children.length) return;
      box.dataset.pile = state.pileId;
      box.replaceChildren.apply(box, COMMANDS.filter(function (ft) { return schemas[ft]; }).map(function (ft) {
        return commandForm(ft, schemas[ft]);
      }));
    }).catch(function (e) { $("command-forms").textContent = "cannot read /openapi.json: " + e.message; });
  }

  var LABELS = { "34": "Start charging", "36": "Stop charging", "92": "Reboot", "56": "Time sync", "12": "Read real-time data", "58": "Set billing model" };

  function commandForm(ft, info) {
    var schema = info.schema;
    var props = schema.properties || {};
    var required = new Set(schema.required || []);
    var pile = state.piles.get(state.pileId) || {};
    var inputs = {};
    var rows = [];
    Object.keys(props).forEach(function (name) {
      if (name === "header") return;
      var prop = props[name];
      // A clock is "now" when left empty: an example time would set the pile's clock back.
      var control = fieldControl(ft, name, prop, name === "time" ? undefined : info.example[name], pile);
      inputs[name] = control;
      rows.push(el("label", { className: "cmd-field" + (control.wide ? " wide" : ""), title: prop.description || "" },
        el("span", { className: "name" }, name, required.has(name) ? "" : el("span", { className: "opt", text: " (optional)" })),
        control.node,
        el("span", { className: "field-error", dataset: { field: name } })));
    });
    var waitInput = info.wait ? el("input", { type: "number", name: "wait", min: "0", step: "any", value: "15", size: "4" }) : null;
    var result = el("div", { className: "cmd-result", hidden: true });
    var send = el("button", { type: "submit", text: "send 0x" + ft });
    var form = el("form", { className: "command", id: "cmd-" + ft, dataset: { ft: ft }, novalidate: true },
      el("h4", null, LABELS[ft] || ft, " ", el("span", { className: "muted", text: info.summary })),
      rows,
      el("div", { className: "cmd-actions" },
        waitInput ? el("label", { className: "wait" }, "wait for the reply ", waitInput, " s") : null,
        send),
      result);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = {};
      var problems = [];
      form.querySelectorAll(".field-error").forEach(function (n) { n.textContent = ""; });
      Object.keys(inputs).forEach(function (name) {
        try {
          var value = inputs[name].read();
          if (value !== undefined) body[name] = value;
        } catch (e) { problems.push({ field: name, rule: e.message }); }
      });
      if (problems.length) { showFieldErrors(form, problems); return; }
      var wait = waitInput && waitInput.value ? Number(waitInput.value) : 0;
      var path = "/proxy/" + ft + (wait > 0 ? "?wait=" + encodeURIComponent(wait) : "");
      send.disabled = true;
      result.hidden = false;
      result.className = "cmd-result waiting";
      result.replaceChildren(el("span", { text: wait > 0 ? "sent, waiting up to " + wait + " s for the reply…" : "sending…" }));
      api("POST", path, body).then(function (r) {
        showResult(form, result, r, wait);
        if (ft === "34" && inputs.tradeSeq && r.ok) inputs.tradeSeq.renew();
      }).catch(function (e) {
        if (e instanceof NeedToken) return;
        result.className = "cmd-result failed";
        result.replaceChildren(el("span", { text: "request failed: " + e.message }));
      }).finally(function () { send.disabled = false; });
    });
    return form;
  }

  function showFieldErrors(form, errors) {
    errors.forEach(function (e) {
      var n = form.querySelector('.field-error[data-field="' + CSS.escape(String(e.field).split(/[.[]/)[0]) + '"]');
      if (n) n.textContent = e.rule;
    });
  }

  function showResult(form, result, r, wait) {
    var b = r.body || {};
    var parts = [el("span", { className: "status s" + r.status, text: String(r.status) }), " ", el("span", { text: b.message || "" })];
    var cls = "cmd-result ";
    if (r.status === 200) cls += "ok";
    else if (r.status === 504) {
      cls += "timeout";
      parts.push(el("p", { text: "No reply within " + wait + " s. The frame was sent" +
        (form.dataset.ft === "34" ? ": do not blindly start again, check the pile's orders first." : ".") }));
    }
    else if (r.status === 502) { cls += "failed"; parts.push(el("p", { text: "The pile disconnected while the reply was awaited. The frame was sent." })); }
    else if (r.status === 403) { cls += "failed"; parts.push(el("p", { text: "This token can read but not send commands." })); }
    else cls += "failed";
    if (b.errors) showFieldErrors(form, b.errors);
    if (b.seq !== undefined) parts.push(el("div", { className: "kv" }, "seq ", el("span", { className: "mono", text: String(b.seq) })));
    if (b.frame) {
      parts.push(el("div", { className: "kv sent-frame" }, "frame ", el("span", { className: "mono hexline", text: b.frame }), " ",
        el("button", { type: "button", className: "copy", text: "copy hex", onclick: function (ev) { var t = ev.currentTarget; copyText(b.frame).then(function () { flash(t, "copied"); }); } })));
    }
    if (b.reply) {
      var fields = Object.keys(b.reply).map(function (k) {
        return el("tr", { dataset: { field: k } }, el("th", { text: k }), el("td", { className: "mono", text: short(b.reply[k]) }));
      });
      parts.push(el("div", { className: "reply" }, el("b", { text: "reply" }), el("table", { className: "fields" }, el("tbody", null, fields))));
    }
    result.className = cls;
    result.replaceChildren.apply(result, parts);
  }

  function fieldControl(ft, name, prop, example, pile) {
    var types = [].concat(prop.type || "string");
    var nullable = types.indexOf("null") >= 0;
    var type = types.filter(function (t) { return t !== "null"; })[0];
    var input;
    if (type === "array" && prop.items && prop.items.maximum === 3 && prop.minItems === 48) {
      return rateEditor(example);
    }
    if (prop.enum) {
      input = el("select", { name: name }, prop.enum.map(function (v) {
        return el("option", { value: String(v), text: String(v) });
      }));
      if (example !== undefined) input.value = String(example);
      return { node: input, read: function () { return type === "integer" ? Number(input.value) : input.value; } };
    }
    if (type === "boolean") {
      input = el("input", { type: "checkbox", name: name });
      input.checked = !!(example !== undefined ? example : prop.default);
      return { node: input, read: function () { return input.checked; } };
    }
    if (type === "integer" || type === "number") {
      input = el("input", { type: "number", name: name, min: prop.minimum, max: prop.maximum, step: type === "integer" ? "1" : "any" });
      if (example !== undefined && example !== null) input.value = String(example);
      else if (prop.default !== undefined) input.value = String(prop.default);
      if (nullable) input.placeholder = "empty: now";
      return {
        node: input,
        read: function () {
          if (input.value === "") { if (nullable) return undefined; if (prop.default !== undefined) return undefined; throw new Error("required"); }
          var v = Number(input.value);
          if (type === "integer" && !Number.isInteger(v)) throw new Error("must be an integer");
          return v;
        },
      };
    }
    if (type === "array") {
      input = el("input", { type: "text", name: name, placeholder: "JSON array" });
      if (example !== undefined) input.value = JSON.stringify(example);
      return { node: input, read: function () { try { return JSON.parse(input.value); } catch (e) { throw new Error("must be a JSON array"); } } };
    }
    input = el("input", { type: "text", name: name, pattern: prop.pattern, spellcheck: "false", autocomplete: "off" });
    var renew = function () {};
    if (name === "id") input.value = pile.id || "";
    else if (name === "gunId") input.value = "01";
    else if (name === "tradeSeq") {
      renew = function () {
        var gun = input.form && input.form.elements.gunId ? input.form.elements.gunId.value : "01";
        input.value = tradeSeqFor(pile.id, gun);
      };
      input.value = tradeSeqFor(pile.id, "01");
    } else if (example !== undefined) input.value = String(example);
    if (name === "id" || name === "tradeSeq" || /card/i.test(name)) input.classList.add("mono");
    input.placeholder = prop.pattern ? prop.pattern.replace(/^\^|\$$/g, "") : "";
    return {
      node: input,
      renew: renew,
      read: function () { return input.value === "" ? undefined : input.value.trim(); },
    };
  }

  function rateEditor(example) {
    var values = Array.isArray(example) && example.length === 48 ? example.slice() : new Array(48).fill(2);
    var brush = 0;
    var painting = false;
    var last = -1; // the last slot painted during a drag (a fast drag skips slots: they are filled)
    var cells = [];
    var brushes = RATES.map(function (rate, i) {
      return el("button", {
        type: "button", className: "brush rate" + i + (i === brush ? " on" : ""), dataset: { rate: String(i) }, text: i + " " + rate,
        onclick: function () {
          brush = i;
          brushes.forEach(function (b, j) { b.classList.toggle("on", j === i); });
        },
      });
    });
    function paint(i) { values[i] = brush; cells[i].className = "slot rate" + brush; cells[i].dataset.rate = String(brush); }
    var grid = el("div", { className: "rate-grid" });
    for (var h = 0; h < 24; h++) {
      var hour = el("div", { className: "hour" }, el("span", { className: "label", text: pad(h) }));
      [0, 1].forEach(function (half) {
        var i = h * 2 + half;
        var cell = el("span", {
          className: "slot rate" + values[i], dataset: { slot: String(i), rate: String(values[i]) },
          title: pad(h) + ":" + (half ? "30" : "00") + "–" + (half ? pad(h + 1) + ":00" : pad(h) + ":30"),
        });
        cell.addEventListener("mousedown", function (ev) { ev.preventDefault(); painting = true; last = i; paint(i); });
        cell.addEventListener("mouseenter", function () {
          if (!painting) return;
          var from = Math.min(last, i), to = Math.max(last, i);
          for (var j = from; j <= to; j++) paint(j);
          last = i;
        });
        cells[i] = cell;
        hour.appendChild(cell);
      });
      grid.appendChild(hour);
    }
    document.addEventListener("mouseup", function () { painting = false; });
    var node = el("div", { className: "rate-editor" },
      el("div", { className: "brushes" }, "paint: ", brushes),
      grid,
      el("div", { className: "muted", text: "48 half-hours from 00:00; click or drag to paint" }));
    return { node: node, wide: true, read: function () { return values.slice(); } };
  }

  // ---- orders --------------------------------------------------------------

  function orderQueryFromForm() {
    var form = $("order-filters");
    var q = [];
    ["pile", "gun", "state", "anomaly", "limit"].forEach(function (k) {
      var v = form.elements[k].value.trim();
      if (v) q.push(k + "=" + encodeURIComponent(v));
    });
    var since = form.elements.since.value;
    if (since) q.push("since=" + new Date(since).getTime());
    return q.join("&");
  }

  function loadOrders(more) {
    var query = more ? state.orderQuery : orderQueryFromForm();
    state.orderQuery = query;
    var path = "/sessions" + (query ? "?" + query : "");
    if (more && state.orderNext) path += (query ? "&" : "?") + "before=" + encodeURIComponent(state.orderNext);
    $("order-error").hidden = true;
    return getJson(path).then(function (body) {
      if (!more) state.orders = new Map();
      body.sessions.forEach(function (o) { state.orders.set(o.tradeSeq, o); });
      state.orderNext = body.next;
      renderOrders();
    }).catch(function (e) {
      if (e instanceof NeedToken) return;
      $("order-error").hidden = false;
      $("order-error").textContent = e.message;
    });
  }

  function orderMatches(o) {
    var form = $("order-filters");
    var pile = form.elements.pile.value.trim(), gun = form.elements.gun.value.trim();
    var st = form.elements.state.value, anomaly = form.elements.anomaly.value.trim();
    if (pile && o.id !== pile) return false;
    if (gun && o.gunId !== gun) return false;
    if (st && o.state !== st) return false;
    if (anomaly) {
      var list = o.anomalies || [];
      if (!list.some(function (a) { return anomaly === "any" || String(a.rule) === anomaly || a.kind === anomaly; })) return false;
    }
    return true;
  }

  function orderArrived(order) {
    if (order.id && state.piles.has(order.id) && order.gunId) {
      var pile = state.piles.get(order.id);
      pile.gunState = pile.gunState || {};
      var gun = pile.gunState[order.gunId] = pile.gunState[order.gunId] || {};
      if (["starting", "charging", "stopping"].indexOf(order.state) >= 0) gun.tradeSeq = order.tradeSeq;
      if (state.view === "piles") renderPiles();
    }
    if (state.view === "orders" && (state.orders.has(order.tradeSeq) || orderMatches(order))) {
      var known = state.orders.get(order.tradeSeq) || {};
      state.orders.set(order.tradeSeq, Object.assign(known, order));
      renderOrders();
    }
    if (state.view === "order" && state.orderId === order.tradeSeq) loadOrder(order.tradeSeq);
  }

  function anomalyBadges(list) {
    return (list || []).map(function (a) {
      return el("span", { className: "anomaly", title: a.detail || "", dataset: { kind: a.kind, rule: String(a.rule) }, text: a.rule + " " + a.kind });
    });
  }

  function renderOrders() {
    var orders = Array.from(state.orders.values()).sort(function (a, b) {
      return (b.startedAt - a.startedAt) || (a.tradeSeq < b.tradeSeq ? 1 : -1);
    });
    var body = $("order-rows");
    body.replaceChildren.apply(body, orders.map(function (o) {
      return el("tr", { className: "order " + o.state, dataset: { trade: o.tradeSeq, state: o.state } },
        el("td", null, el("a", { href: "#/order/" + o.tradeSeq, className: "mono", text: o.tradeSeq })),
        el("td", null, el("a", { href: "#/pile/" + o.id, className: "mono", text: o.id })),
        el("td", { text: o.gunId }),
        el("td", null, el("span", { className: "badge state-" + o.state, text: o.state })),
        el("td", { text: dateTime(o.startedAt) }),
        el("td", { text: dateTime(o.endedAt) }),
        el("td", { className: "num", text: scaled(o.energy) }),
        el("td", { className: "num", text: scaled(o.amount) }),
        el("td", { className: "anomalies" }, anomalyBadges(o.anomalies)));
    }));
    $("order-empty").hidden = orders.length > 0;
    $("order-more").hidden = !state.orderNext;
  }

  $("order-filters").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = orderQueryFromForm();
    var target = "#/orders" + (q ? "?" + q : "");
    if (location.hash === target) loadOrders(false); else location.hash = target;
  });
  $("order-more").addEventListener("click", function () { loadOrders(true); });

  function loadOrder(tradeSeq) {
    return api("GET", "/sessions/" + encodeURIComponent(tradeSeq)).then(function (r) {
      if (state.orderId !== tradeSeq) return;
      if (!r.ok) {
        $("order-detail").replaceChildren(el("p", { className: "error", text: (r.body && r.body.message) || "HTTP " + r.status }));
        return;
      }
      renderOrder(r.body);
    }).catch(function (e) { if (!(e instanceof NeedToken)) $("order-detail").textContent = e.message; });
  }

  function renderOrder(o) {
    var facts = [
      ["pile", el("a", { href: "#/pile/" + o.id, className: "mono", text: o.id })],
      ["gun", o.gunId],
      ["state", el("span", { className: "badge state-" + o.state, text: o.state })],
      ["started", dateTime(o.startedAt)],
      ["ended", dateTime(o.endedAt)],
      ["energy", scaled(o.energy) + " kWh"],
      ["amount", scaled(o.amount)],
    ];
    if (o.failure) facts.push(["failure", short(o.failure)]);
    if (o.confirmed !== undefined) facts.push(["record confirmed", short(o.confirmed)]);
    if (o.tariffCheck !== undefined && o.tariffCheck !== null) facts.push(["tariff check", short(o.tariffCheck)]);
    var anomalies = (o.anomalies || []).map(function (a) {
      return el("li", { className: "anomaly-item", dataset: { kind: a.kind, rule: String(a.rule) } },
        el("span", { className: "anomaly", text: "rule " + a.rule + " · " + a.kind }), " ",
        el("span", { className: "muted", text: dateTime(a.at) }), " ", a.detail || "");
    });
    var timeline = (o.timeline || []).map(function (e) {
      var info = Object.assign({}, e);
      delete info.at; delete info.what;
      var text;
      if (e.what === "frame") {
        text = [el("span", { className: "dir", text: e.direction === "up" ? "↑" : e.direction === "down" ? "↓" : "" }), " ",
          el("span", { className: "code mono", text: "0x" + e.ft }), " "];
        delete info.ft; delete info.direction;
        text.push(summary(info));
      } else if (e.what === "state") text = [el("span", { className: "badge state-" + e.state, text: e.state })];
      else if (e.what === "anomaly") text = [el("span", { className: "anomaly", text: "rule " + e.rule + " · " + e.kind }), " ", e.detail || ""];
      else text = [summary(info)];
      return el("tr", { className: "event ev-" + e.what, dataset: { what: e.what } }, el("td", { className: "mono", text: dateTime(e.at) + "." + pad(new Date(e.at).getMilliseconds(), 3) }),
        el("td", { text: e.what }), el("td", null, text));
    });
    $("order-title").textContent = o.tradeSeq;
    fill($("order-detail"),
      el("dl", { className: "facts" }, facts.map(function (f) { return [el("dt", { text: f[0] }), el("dd", null, f[1])]; })
        .reduce(function (a, b) { return a.concat(b); }, [])),
      el("h3", { text: "Anomalies" }),
      anomalies.length ? el("ul", { className: "anomalies", id: "order-anomalies" }, anomalies) : el("p", { className: "muted", text: "none" }),
      el("h3", { text: "Timeline" }),
      el("table", { className: "grid timeline" }, el("tbody", null, timeline)),
      o.record ? el("details", null, el("summary", { text: "transaction record (0x3b)" }), el("pre", { className: "mono", text: JSON.stringify(o.record, null, 1) })) : null);
  }

  // ---- views ---------------------------------------------------------------

  function route() {
    if (!state.ready) return;
    var hash = location.hash.replace(/^#\/?/, "");
    var query = "";
    var q = hash.indexOf("?");
    if (q >= 0) { query = hash.slice(q + 1); hash = hash.slice(0, q); }
    var parts = hash.split("/");
    var view = parts[0] || "piles";
    ["piles", "pile", "orders", "order"].forEach(function (v) { $("view-" + v).hidden = v !== view; });
    $("nav-piles").classList.toggle("on", view === "piles" || view === "pile");
    $("nav-orders").classList.toggle("on", view === "orders" || view === "order");
    var previous = state.view;
    var previousPile = state.pileId;
    state.view = view;
    if (view === "pile") {
      state.pileId = decodeURIComponent(parts[1] || "");
      renderPileHead();
      if (previous !== "pile" || previousPile !== state.pileId) {
        $("command-forms").replaceChildren();
        loadFrames();
      }
      renderCommands();
    } else {
      state.pileId = null;
      $("commands").hidden = true;
    }
    if (view === "piles") renderPiles();
    if (view === "orders") {
      var form = $("order-filters");
      var params = new URLSearchParams(query);
      ["pile", "gun", "state", "anomaly", "limit"].forEach(function (k) { if (params.has(k)) form.elements[k].value = params.get(k); });
      if (!params.has("pile")) form.elements.pile.value = "";
      loadOrders(false);
    }
    if (view === "order") {
      state.orderId = decodeURIComponent(parts[1] || "");
      $("order-title").textContent = state.orderId;
      $("order-detail").replaceChildren();
      loadOrder(state.orderId);
    }
    openEvents();
  }

  window.addEventListener("hashchange", route);

  function start() {
    $("main").hidden = true;
    // Nothing is shown until the API answers; a 401 asks for the token.
    refreshPiles().then(function () {
      state.ready = true;
      $("fatal").hidden = true;
      $("main").hidden = false;
      $("forget-token").hidden = !state.token;
      document.body.classList.add("ready");
      route();
    }).catch(function (e) {
      if (e instanceof NeedToken) return;
      $("fatal").hidden = false;
      $("fatal").textContent = "The API does not answer: " + e.message;
    });
  }

  setInterval(function () {
    if (!state.ready || document.hidden) return;
    if (Date.now() - lastRefresh < Math.max(PILE_REFRESH_MS, 20 * refreshCost) - 500) return;
    refreshPiles().catch(function () {});
  }, 1000);
  setInterval(function () { if (state.ready && state.view === "piles") renderPiles(); }, 5000);

  window.ykcConsole = state; // for debugging from the browser's console
  start();
})();
