// The moat request inspector's page. Everything shown comes from the JSON API and is put into
// the page as text (textContent, never HTML): headers, bodies and certificate fields are
// whatever a client sent.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { selected: null, refreshTimer: null, refused: 0 };

  // --- small DOM helpers: text only -----------------------------------------------------------
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function facts(list, pairs) {
    clear(list);
    for (const [name, value] of pairs) {
      list.appendChild(el("dt", name));
      list.appendChild(el("dd", value === null || value === undefined || value === "" ? "—" : value));
    }
  }
  function time(iso) {
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleTimeString([], { hour12: false }) + "." +
      String(date.getMilliseconds()).padStart(3, "0");
  }
  function ms(value) {
    return value === null || value === undefined ? "—" : (value < 10 ? value.toFixed(2) : value.toFixed(0)) + " ms";
  }
  async function api(path, options) {
    const response = await fetch(path, options);
    const text = await response.text();
    const body = text ? JSON.parse(text) : null;
    if (!response.ok) throw new Error(body && body.msg ? body.msg : response.status + " " + response.statusText);
    return body;
  }

  // --- the list --------------------------------------------------------------------------------
  function filterQuery() {
    const params = new URLSearchParams();
    for (const input of $("filters").querySelectorAll("input")) {
      if (input.value.trim() !== "") params.set(input.name, input.value.trim());
    }
    params.set("limit", "500");
    return params.toString();
  }

  function statusClass(code) {
    return code >= 500 ? "s5" : code >= 400 ? "s4" : code >= 300 ? "s3" : "s2";
  }

  function row(request) {
    const tr = el("tr");
    tr.dataset.id = request.id;
    if (request.id === state.selected) tr.classList.add("selected");
    tr.appendChild(el("td", time(request.start), "time"));
    const subject = request.client ? request.client.subject : "no certificate";
    tr.appendChild(el("td", subject, request.client ? "subject" : "subject muted"));
    tr.appendChild(el("td", request.method, "method"));
    tr.appendChild(el("td", request.host, "wide"));
    const pathCell = el("td", null, "path");
    const link = el("a", request.path);
    link.href = "#/requests/" + encodeURIComponent(request.id);
    pathCell.appendChild(link);
    if (request.replay_of) pathCell.appendChild(el("span", "replay", "tag"));
    tr.appendChild(pathCell);
    tr.appendChild(el("td", request.status, "status " + statusClass(request.status)));
    tr.appendChild(el("td", request.rule, "wide rule"));
    tr.appendChild(el("td", ms(request.duration_ms), "duration"));
    return tr;
  }

  async function loadRequests() {
    let list;
    try {
      list = await api("/api/requests/http?" + filterQuery());
      $("filter-error").hidden = true;
    } catch (error) {
      $("filter-error").textContent = error.message;
      $("filter-error").hidden = false;
      return;
    }
    const rows = $("request-rows");
    clear(rows);
    for (const request of list.requests) rows.appendChild(row(request));
    $("empty").hidden = list.requests.length > 0;
  }

  function refreshSoon() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      loadRequests();
    }, 100);
  }

  // --- the detail ------------------------------------------------------------------------------
  function headerRows(table, headers) {
    const body = table.tBodies[0];
    clear(body);
    for (const name of Object.keys(headers || {})) {
      for (const value of headers[name]) {
        const tr = el("tr");
        tr.appendChild(el("th", name));
        tr.appendChild(el("td", value));
        body.appendChild(tr);
      }
    }
  }

  function bodyText(body) {
    if (!body || body.size === 0) return "(empty)";
    let text = body.data || "";
    if (body.encoding === "base64") text = "(binary, base64) " + text;
    else if (body.content_type && /json/i.test(body.content_type) && !body.truncated) {
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* shown as sent */ }
    }
    if (body.truncated) text += "\n… (" + body.captured + " of " + body.size + " bytes kept; --inspect-max-body)";
    return text;
  }

  async function showDetail(id) {
    let request;
    try {
      request = await api("/api/requests/http/" + encodeURIComponent(id));
    } catch (error) {
      $("replay-result").textContent = error.message;
      return;
    }
    state.selected = id;
    state.request = request;
    for (const tr of $("request-rows").children) tr.classList.toggle("selected", tr.dataset.id === id);
    const detail = $("detail");
    detail.hidden = false;
    $("detail-title").textContent = request.method + " " + request.path;
    $("replay-form").hidden = true;
    // What a replay that led here said, shown once.
    $("replay-result").textContent = state.notice || "";
    state.notice = null;
    facts($("detail-facts"), [
      ["Status", request.response.status],
      ["Time", request.start],
      ["Duration", ms(request.duration_ms)],
      ["Endpoint", request.endpoint],
      ["Host", request.host],
      ["Rule", request.rule],
      ["Reached the upstream", request.forwarded ? "yes" : "no"],
      ["Client address", request.remote_addr],
      ["Replay of", request.replay_of],
    ]);
    const client = request.client;
    facts($("detail-client"), client ? [
      ["Subject", client.subject], ["Common name", client.common_name], ["Issuer", client.issuer], ["Serial", client.serial],
      ["Not before", client.not_before], ["Not after", client.not_after],
      ["SANs", client.sans.join(", ")], ["SHA-256", client.fingerprint_sha256],
    ] : [["Certificate", "none presented"]]);
    facts($("detail-tls"), [
      ["Version", request.tls.version], ["Cipher", request.tls.cipher],
      ["SNI", request.tls.sni], ["ALPN", request.tls.alpn],
    ]);
    headerRows($("detail-request-headers"), request.request.headers);
    headerRows($("detail-response-headers"), request.response.headers);
    $("detail-request-body").textContent = bodyText(request.request.body);
    $("detail-response-body").textContent = bodyText(request.response.body);
    detail.focus();
  }

  function closeDetail() {
    state.selected = null;
    $("detail").hidden = true;
    for (const tr of $("request-rows").children) tr.classList.remove("selected");
    if (location.hash.startsWith("#/requests/")) location.hash = "#/requests";
  }

  // --- replay ----------------------------------------------------------------------------------
  async function replay(modify) {
    if (!state.selected) return;
    $("replay-result").textContent = "sending…";
    try {
      const sent = await api("/api/requests/http", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(modify ? { id: state.selected, modify } : { id: state.selected }),
      });
      $("replay-form").hidden = true;
      state.notice = "replayed: " + sent.response.status + " (" + sent.method + " " + sent.path + ")";
      location.hash = "#/requests/" + encodeURIComponent(sent.id);
      await loadRequests();
    } catch (error) {
      $("replay-result").textContent = "replay failed: " + error.message;
    }
  }

  function openReplayForm() {
    const request = state.request;
    if (!request) return;
    $("replay-method").value = request.method;
    $("replay-path").value = request.path;
    $("replay-headers").value = "";
    state.prefilledBody = request.request.body && request.request.body.encoding === "utf-8" ? request.request.body.data : "";
    $("replay-body").value = state.prefilledBody;
    $("replay-form").hidden = false;
    $("replay-method").focus();
  }

  function replayChanges() {
    const modify = { method: $("replay-method").value, path: $("replay-path").value, headers: {} };
    for (const line of $("replay-headers").value.split("\n")) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      modify.headers[name] = value === "" ? null : value;
    }
    const original = state.request.request.body;
    const body = $("replay-body").value;
    // A truncated body left as it was is not sent: the inspector then says it cannot replay it.
    const untouchedTruncated = original && original.truncated && body === state.prefilledBody;
    if (!untouchedTruncated && (body !== "" || (original && original.size > 0))) modify.body = body;
    return modify;
  }

  // --- refused handshakes and status -----------------------------------------------------------
  function handshakeRow(handshake) {
    const tr = el("tr");
    tr.appendChild(el("td", time(handshake.time), "time"));
    tr.appendChild(el("td", handshake.endpoint));
    tr.appendChild(el("td", handshake.remote_addr));
    tr.appendChild(el("td", handshake.sni, "wide"));
    const reason = el("td", handshake.reason, "reason");
    reason.title = handshake.detail;
    tr.appendChild(reason);
    tr.appendChild(el("td", handshake.client ? handshake.client.subject : "—", "subject"));
    return tr;
  }

  async function loadHandshakes() {
    const list = await api("/api/handshakes/refused?limit=500");
    const rows = $("handshake-rows");
    clear(rows);
    for (const handshake of list.handshakes) rows.appendChild(handshakeRow(handshake));
  }

  function tableRows(table, rows) {
    const body = table.tBodies[0];
    clear(body);
    for (const cells of rows) {
      const tr = el("tr");
      for (const cell of cells) tr.appendChild(el("td", cell));
      body.appendChild(tr);
    }
  }

  async function loadStatus() {
    const status = await api("/api/status");
    state.refused = status.refused_handshakes;
    $("refused-count").textContent = String(state.refused);
    const latency = status.requests.latency_ms;
    facts($("status-facts"), [
      ["Uptime", Math.floor(status.uptime_seconds) + " s (since " + status.started + ")"],
      ["Requests", status.requests.total + " in all, " + status.requests.last_minute + " in the last minute (" +
        status.requests.per_second.toFixed(2) + "/s)"],
      ["Latency", "p50 " + ms(latency.p50) + " · p90 " + ms(latency.p90) + " · p95 " + ms(latency.p95) +
        " · p99 " + ms(latency.p99) + " over the " + latency.count + " kept requests that reached the upstream"],
      ["Refused handshakes", status.refused_handshakes],
      ["Kept", status.requests.kept + " requests, " + status.requests.kept_bytes + " bytes (limits " +
        status.limits.max_requests + " requests, " + status.limits.max_bytes + " bytes, " +
        status.limits.max_body + " bytes per body)"],
    ]);
    tableRows($("status-endpoints"), status.endpoints.map((e) => [e.name, e.kind, e.url || "not published yet", e.upstream]));
    tableRows($("status-edges"), status.edges.length ? status.edges.map((e) =>
      [e.edge, e.connected ? "connected" : "disconnected", e.since, e.detail || ""]) :
      [["not published through an edge", "", "", ""]]);
  }

  // --- views and live updates ------------------------------------------------------------------
  function route() {
    const hash = location.hash || "#/requests";
    const view = hash.startsWith("#/handshakes") ? "handshakes" : hash.startsWith("#/status") ? "status" : "requests";
    for (const name of ["requests", "handshakes", "status"]) {
      $("view-" + name).hidden = name !== view;
      const link = $("nav-" + name);
      if (name === view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    if (view === "handshakes") loadHandshakes();
    if (view === "status") loadStatus();
    const match = hash.match(/^#\/requests\/(.+)$/);
    if (match) showDetail(decodeURIComponent(match[1]));
  }

  function follow() {
    const events = new EventSource("/api/events");
    events.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
    events.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "live"; };
    events.addEventListener("request", refreshSoon);
    events.addEventListener("lagged", refreshSoon);
    events.addEventListener("cleared", () => { closeDetail(); loadRequests(); loadHandshakes(); });
    events.addEventListener("refusal", (event) => {
      const handshake = JSON.parse(event.data);
      $("handshake-rows").prepend(handshakeRow(handshake));
      state.refused += 1;
      $("refused-count").textContent = String(state.refused);
    });
    events.addEventListener("status", () => { if (!$("view-status").hidden) loadStatus(); });
  }

  function start() {
    let typing = null;
    $("filters").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(loadRequests, 150);
    });
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); loadRequests(); });
    $("filters").addEventListener("reset", () => setTimeout(loadRequests, 0));
    $("clear-requests").addEventListener("click", () => api("/api/requests/http", { method: "DELETE" }));
    $("detail-close").addEventListener("click", closeDetail);
    $("replay").addEventListener("click", () => replay(null));
    $("replay-edit").addEventListener("click", openReplayForm);
    $("replay-cancel").addEventListener("click", () => { $("replay-form").hidden = true; });
    $("replay-form").addEventListener("submit", (event) => { event.preventDefault(); replay(replayChanges()); });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("detail").hidden) closeDetail();
    });
    window.addEventListener("hashchange", route);
    setInterval(() => { if (!$("view-status").hidden) loadStatus(); }, 5000);
    loadRequests();
    loadStatus();
    route();
    follow();
  }

  start();
})();
