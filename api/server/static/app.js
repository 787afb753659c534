// stratflow dashboard: plain JavaScript, no build step. Everything the page shows comes from
// the control API of the same origin: REST calls with the bearer token, and the WebSocket
// stream (/api/stream) with the token as its subprotocol. Text from the log is only ever set
// as textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "stratflow.token";
const MAX_ROWS = 200;
const SETTINGS_FIELDS = [
  /^risk\.[a-z_]+$/, /^strategy\.(target_fraction|strategic_fraction)$/,
  /^gpt\.(model|daily_budget_usd|cost_estimate_usd)$/,
];

const S = {
  token: sessionStorage.getItem(TOKEN_KEY),
  cursor: null,
  ws: null,
  retry: 0,
  decisions: new Map(), // decision_id -> row (newest version)
  settings: {},         // dotted key -> value shown
  refreshTimer: null,
  equityTimer: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function time(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(Number(ms)).toISOString().replace("T", " ").slice(0, 19);
}

function money(v) {
  if (v === null || v === undefined || v === "") return "–";
  const n = Number(v);
  return Number.isFinite(n) ? n.toLocaleString(undefined, { maximumFractionDigits: 2 }) : String(v);
}

// ------------------------------------------------------------------ the API
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${S.token}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: "no-store",
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401 || response.status === 403) {
    logout("the token was refused");
    throw new Error("unauthorised");
  }
  return { status: response.status, body };
}

// ------------------------------------------------------------------ login
function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  S.token = null;
  if (S.ws) { S.ws.onclose = null; S.ws.close(); S.ws = null; }
  clearInterval(S.refreshTimer);
  clearInterval(S.equityTimer);
  showLogin(message);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  S.token = $("token").value.trim();
  $("token").value = "";
  sessionStorage.setItem(TOKEN_KEY, S.token);
  start();
});
$("logout").addEventListener("click", () => logout(""));

// ------------------------------------------------------------------ status, positions, alerts
async function loadStatus() {
  const { status, body } = await api("/api/status");
  if (status !== 200) return;
  $("run").textContent = `run ${body.run_id}${body.mode ? " · " + body.mode : ""}`;
  setState(body.trading_state);
  $("equity-now").textContent = money(body.equity);
  $("pnl").textContent = `P&L ${money(body.pnl.since_start)} (realised ${money(body.pnl.realized)}, unrealised ${money(body.pnl.unrealized)})`;
  $("cash").textContent = money(body.cash);
  $("open-orders").textContent = `${body.open_orders.length} open orders`;
  const gpt = body.gpt;
  $("gpt-cost").textContent = `$${money(gpt.cost_usd)}`;
  $("gpt-detail").textContent = `${gpt.calls} calls (${gpt.answered} answered) · today $${money(gpt.cost_today_usd)} of $${money(gpt.daily_budget_usd)} · ${gpt.model}`;
  const lag = body.consumer_lag || {};
  $("lag").textContent = lag.messages === null || lag.messages === undefined ? "lag –" : `lag ${lag.messages}`;
  $("dead").textContent = `${body.dead_letters} dead letters${lag.note ? " · " + lag.note : ""}`;
  const tbody = $("positions").tBodies[0];
  tbody.replaceChildren(...body.positions.map((p) => el("tr", {},
    el("td", {}, p.symbol), el("td", { class: "num" }, p.quantity), el("td", { class: "num" }, money(p.avg_cost)),
    el("td", { class: "num" }, money(p.mark_price)), el("td", { class: "num" }, money(p.unrealized_pnl)),
    el("td", { class: "num" }, money(p.realized_pnl)))));
  if (!$("alerts").children.length) body.alerts.latest.slice().reverse().forEach(addAlert);
}

function setState(state) {
  $("state").textContent = state;
  $("state").dataset.state = state;
}

function addAlert(a) {
  const li = el("li", { class: `sev-${a.severity}` }, `${time(a.ts_ms)} ${a.severity} ${a.source}: ${a.message}`);
  $("alerts").prepend(li);
  while ($("alerts").children.length > MAX_ROWS) $("alerts").lastChild.remove();
}

function addOrderLine(text) {
  $("orders").prepend(el("li", {}, text));
  while ($("orders").children.length > MAX_ROWS) $("orders").lastChild.remove();
}

// ------------------------------------------------------------------ equity curve
async function loadEquity() {
  const { status, body } = await api("/api/equity?points=600");
  if (status !== 200 || typeof Plotly === "undefined") return;
  const x = body.points.map((p) => new Date(p.ts_ms));
  const y = body.points.map((p) => Number(p.equity));
  const trace = { x, y, type: "scatter", mode: "lines", name: "equity", line: { width: 1.5 } };
  const layout = { margin: { l: 60, r: 10, t: 10, b: 30 }, xaxis: { type: "date" },
                   yaxis: { title: { text: "equity" } }, showlegend: false };
  Plotly.react("equity-chart", [trace], layout, { displayModeBar: false, responsive: true });
}

// ------------------------------------------------------------------ decisions
function decisionRow(d) {
  const row = el("tr", { dataset: { id: d.decision_id }, onclick: () => showStory(d.decision_id) },
    el("td", {}, time(d.ts_ms)), el("td", {}, d.symbol), el("td", {}, d.branch), el("td", {}, d.status),
    el("td", { class: "num" }, d.n_orders ?? (d.orders ? d.orders.length : "")),
    el("td", {}, String(d.note || "").slice(0, 120)));
  return row;
}

function upsertDecision(d) {
  const tbody = $("decisions").tBodies[0];
  const old = S.decisions.get(d.decision_id);
  if (old && (old.version || 1) > (d.version || 1)) return;
  S.decisions.set(d.decision_id, d);
  const fresh = decisionRow(d);
  const existing = tbody.querySelector(`tr[data-id="${CSS.escape(d.decision_id)}"]`);
  if (existing) existing.replaceWith(fresh); else tbody.prepend(fresh);
  while (tbody.rows.length > MAX_ROWS) {
    S.decisions.delete(tbody.lastChild.dataset.id);
    tbody.lastChild.remove();
  }
}

async function loadDecisions() {
  const { status, body } = await api("/api/decisions?limit=50");
  if (status !== 200) return;
  body.items.slice().reverse().forEach(upsertDecision);
}

async function showStory(id, tries = 3) {
  const { status, body } = await api(`/api/decisions/${encodeURIComponent(id)}`);
  // A decision just streamed may reach the log a moment later (it is written in batches).
  if (status === 404 && tries > 1) { setTimeout(() => showStory(id, tries - 1), 1000); return; }
  $("story-panel").hidden = false;
  $("story-id").textContent = id;
  const story = $("story");
  if (status !== 200) { story.replaceChildren(el("p", { class: "error" }, body?.detail || `error ${status}`)); return; }
  const sections = [];
  for (const [key, value] of Object.entries(body)) {
    if (key === "decision_id") continue;
    const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    sections.push(el("h3", {}, key), el("pre", {}, text));
  }
  story.replaceChildren(...sections);
}
$("story-close").addEventListener("click", () => { $("story-panel").hidden = true; });

// ------------------------------------------------------------------ the stream
function b64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const from = S.cursor ? `?from=${encodeURIComponent(S.cursor)}` : "";
  const ws = new WebSocket(`${scheme}//${location.host}/api/stream${from}`, ["stratflow.v1", "bearer." + b64url(S.token)]);
  S.ws = ws;
  // A frame holds one message a line.
  ws.onmessage = (event) => { for (const line of event.data.split("\n")) if (line) onMessage(JSON.parse(line)); };
  ws.onclose = (event) => {
    S.ws = null;
    setStream("off", event.reason || `closed (${event.code})`);
    if (event.code === 4401 || event.code === 4403) { logout("the stream refused the token"); return; }
    if (event.code === 4400 && S.cursor) S.cursor = null; // a cursor it cannot resume: start live
    const wait = Math.min(30000, 500 * 2 ** S.retry++);
    setTimeout(() => { if (S.token && !S.ws) connect(); }, wait);
  };
}

function setStream(state, text) {
  $("stream").dataset.stream = state;
  $("stream").textContent = `stream: ${text || state}`;
}

let refreshPending = false;
function refreshSoon() {
  if (refreshPending) return;
  refreshPending = true;
  setTimeout(() => { refreshPending = false; loadStatus(); loadEquity(); }, 1500);
}

function onMessage(msg) {
  if (msg.cursor) S.cursor = msg.cursor;
  const d = msg.data;
  switch (msg.kind) {
    case "live": S.retry = 0; setStream("live", `live (${msg.replayed} caught up)`); break;
    case "gap": addAlert({ ts_ms: Date.now(), severity: "warning", source: "stream", message: `messages ${msg.from}-${msg.to} of ${msg.topic} are no longer held` }); break;
    case "decision": upsertDecision(d); break;
    case "order": addOrderLine(`${time(d.placed_ms)} order ${d.side} ${d.quantity} ${d.symbol} ${d.status}${d.reason ? " · " + d.reason : ""}`); refreshSoon(); break;
    case "fill": addOrderLine(`${time(d.ts_ms)} fill ${d.side} ${d.quantity} ${d.symbol} @ ${d.price}`); refreshSoon(); break;
    case "alert": addAlert(d); break;
    case "ack":
      if (d.outcome === "applied" && d.state_after) setState(d.state_after);
      addOrderLine(`${time(d.applied_ms)} ${d.action} ${d.outcome} by ${d.issued_by}${d.reason ? " · " + d.reason : ""}`);
      break;
    default: break;
  }
}

// ------------------------------------------------------------------ trading state
function showResult(result) {
  const { status, body } = result;
  let text;
  if (status === 200) text = `${body.ack.action}: ${body.ack.outcome} (${body.ack.state_before} → ${body.ack.state_after})`;
  else if (status === 202) text = `sent, not acknowledged yet (command ${body.command_id})`;
  else if (status === 409) text = `refused: ${typeof body.detail === "string" ? body.detail : body.ack?.reason || JSON.stringify(body.detail)}`;
  else text = `error ${status}: ${JSON.stringify(body?.detail ?? body)}`;
  $("control-result").textContent = text;
  $("control-result").dataset.status = String(status);
  if (status === 200 && body.ack.outcome === "applied") setState(body.ack.state_after);
}

document.querySelectorAll("button[data-state]").forEach((button) => {
  button.addEventListener("click", async () => {
    $("control-result").textContent = `${button.dataset.state}: sending…`;
    $("control-result").dataset.status = "";
    showResult(await api("/api/control/state", { method: "POST", body: { state: button.dataset.state, by: "dashboard", wait_s: 15 } }));
    loadStatus();
  });
});

let haltNonce = null;
$("btn-halt").addEventListener("click", async () => {
  const { status, body } = await api("/api/control/halt", { method: "POST", body: { by: "dashboard" } });
  if (status !== 428) { showResult({ status, body }); return; }
  haltNonce = body.confirm;
  $("halt-detail").textContent = body.detail;
  $("halt-confirm").hidden = false;
});
$("btn-halt-cancel").addEventListener("click", () => { haltNonce = null; $("halt-confirm").hidden = true; });
$("btn-halt-confirm").addEventListener("click", async () => {
  $("halt-confirm").hidden = true;
  showResult(await api("/api/control/halt", { method: "POST", body: { confirm: haltNonce, by: "dashboard", wait_s: 15 } }));
  haltNonce = null;
  loadStatus();
});

// ------------------------------------------------------------------ settings
function flatten(prefix, value, out) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(prefix ? `${prefix}.${k}` : k, v, out);
  } else out[prefix] = value;
  return out;
}

async function loadSettings() {
  const { status, body } = await api("/api/settings");
  if (status !== 200) return;
  const flat = flatten("", body.settings, {});
  S.settings = {};
  const fields = [];
  for (const [key, value] of Object.entries(flat)) {
    if (!SETTINGS_FIELDS.some((re) => re.test(key))) continue;
    if (value !== null && typeof value === "object") continue;
    S.settings[key] = value;
    const id = `set-${key.replace(/[^a-z0-9]/gi, "-")}`;
    fields.push(el("div", { class: "field", dataset: { key } },
      el("label", { for: id }, key),
      el("input", { id, name: key, value: value === null ? "" : String(value) }),
      el("p", { class: "error", role: "alert" })));
  }
  $("settings-fields").replaceChildren(...fields);
}

function parsed(key, text) {
  const before = S.settings[key];
  if (typeof before === "number") return text.trim() === "" ? null : Number(text);
  if (typeof before === "boolean") return text.trim().toLowerCase() === "true";
  if (before === null && text.trim() !== "" && !Number.isNaN(Number(text))) return Number(text);
  return text;
}

$("settings-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  document.querySelectorAll("#settings-fields .error").forEach((p) => { p.textContent = ""; });
  const set = {};
  document.querySelectorAll("#settings-fields input").forEach((input) => {
    const before = S.settings[input.name];
    if (input.value !== (before === null ? "" : String(before))) set[input.name] = parsed(input.name, input.value);
  });
  if (!Object.keys(set).length) { $("settings-result").textContent = "nothing changed"; return; }
  const { status, body } = await api("/api/settings", { method: "PATCH", body: { set, by: "dashboard", wait_s: 15 } });
  if (status === 422 && Array.isArray(body.detail)) {
    const general = [];
    for (const problem of body.detail) {
      const key = problem.loc[2];
      const field = key && document.querySelector(`#settings-fields .field[data-key="${CSS.escape(key)}"] .error`);
      if (field) field.textContent = problem.msg; else general.push(problem.msg);
    }
    $("settings-result").textContent = general.length ? general.join("; ") : "not applied: see the fields";
    return;
  }
  $("settings-result").textContent = status === 200 ? `applied (${body.ack.action})` : status === 202 ? "sent, not acknowledged yet" : `error ${status}: ${JSON.stringify(body?.detail)}`;
  if (status === 200) loadSettings();
});

// ------------------------------------------------------------------ start
async function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  try {
    await loadStatus();
    await Promise.all([loadEquity(), loadDecisions(), loadSettings()]);
  } catch (err) {
    if (String(err.message) === "unauthorised") return;
    throw err;
  }
  if (!S.ws) connect();
  clearInterval(S.refreshTimer);
  clearInterval(S.equityTimer);
  S.refreshTimer = setInterval(() => loadStatus().catch(() => {}), 5000);
  S.equityTimer = setInterval(() => loadEquity().catch(() => {}), 10000);
}

if (S.token) start(); else showLogin("");
