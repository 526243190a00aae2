// The etf-engine operations console: plain JS modules, no build step, nothing fetched but the engine's
// own Connect API (same origin). The token is kept in sessionStorage: a reload does not ask again.
const PKG = "etf_engine.v1";
const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("etf-token") || "", fund: "", orders: [], streams: [] };

// -- figures as the CLI prints them: exact decimal strings, thousands separators, never floats --------
export function figure(text) {
  if (text === undefined || text === null || text === "") return "-";
  const s = String(text);
  const sign = s.startsWith("-") ? "-" : "";
  const [whole, frac] = s.replace(/^-/, "").split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return sign + grouped + (frac !== undefined ? "." + frac : "");
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function call(method, body = {}) {
  const reply = await fetch(`/${PKG}.${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Authorization": `Bearer ${state.token}` },
    body: JSON.stringify(body),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new ApiError(reply.status, data.code || "unknown", data.message || reply.statusText);
  return data;
}

// A Connect server stream: enveloped JSON messages (5-byte prefix), ended by a flag-2 envelope.
async function stream(method, body, onMessage, signal) {
  const json = new TextEncoder().encode(JSON.stringify(body));
  const frame = new Uint8Array(5 + json.length);
  new DataView(frame.buffer).setUint32(1, json.length);
  frame.set(json, 5);
  const reply = await fetch(`/${PKG}.${method}`, {
    method: "POST", body: frame, signal,
    headers: { "Content-Type": "application/connect+json", "Authorization": `Bearer ${state.token}` },
  });
  if (!reply.ok) throw new ApiError(reply.status, "stream", reply.statusText);
  const reader = reply.body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer); joined.set(value, buffer.length); buffer = joined;
    while (buffer.length >= 5) {
      const view = new DataView(buffer.buffer, buffer.byteOffset);
      const flags = view.getUint8(0), size = view.getUint32(1);
      if (buffer.length < 5 + size) break;
      const message = JSON.parse(new TextDecoder().decode(buffer.slice(5, 5 + size)));
      buffer = buffer.slice(5 + size);
      if (flags & 2) { if (message.error) throw new ApiError(0, message.error.code, message.error.message); return; }
      onMessage(message);
    }
  }
}

function cell(text, cls = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function row(values, numeric = []) {
  const tr = document.createElement("tr");
  values.forEach((v, i) => tr.append(v instanceof Node ? v : cell(v, numeric.includes(i) ? "num" : "")));
  return tr;
}

function fill(sel, rows) { $(sel + " tbody").replaceChildren(...rows); }

// -- sign-in ------------------------------------------------------------------------------------------
async function signIn(token) {
  state.token = token;
  try {
    await call("Valuation/ListFunds");
  } catch (e) {
    sessionStorage.removeItem("etf-token");
    $("#login-error").textContent = e.status === 401 ? "That token is not known to this server." : e.message;
    showLogin();
    return;
  }
  sessionStorage.setItem("etf-token", token);
  $("#login").hidden = true; $("#app").hidden = false; $("#signout").hidden = false;
  await loadFunds();
  await loadParticipants();
}

function showLogin() { $("#login").hidden = false; $("#app").hidden = true; $("#signout").hidden = true; }

// -- funds and the live NAV ---------------------------------------------------------------------------
function age(asOf) {
  const ms = Date.now() - Number(asOf || 0);
  return asOf && asOf !== "0" ? `${Math.max(0, Math.round(ms / 1000))} s` : "-";
}

function showNav(nav) {
  const tr = document.querySelector(`#funds tr[data-fund="${nav.fundId}"]`);
  if (!tr) return;
  tr.querySelector(".nav").textContent = figure(nav.nav);
  tr.querySelector(".nps").textContent = figure(nav.navPerShare);
  tr.querySelector(".age").textContent = age(nav.asOf);
  const stale = tr.querySelector(".stale-flag");
  stale.textContent = nav.stale ? "STALE" : "fresh";
  stale.className = "stale-flag" + (nav.stale ? " stale" : "");
}

async function loadFunds() {
  state.streams.forEach((c) => c.abort());
  state.streams = [];
  const { funds = [] } = await call("Valuation/ListFunds");
  fill("#funds", funds.map((f) => {
    const tr = row([f.fundId, f.name, f.dealingStatus || "OPEN", cell("-", "num nav"), cell("-", "num nps"),
                    cell("-", "num age"), cell("-", "stale-flag")]);
    tr.dataset.fund = f.fundId;
    tr.className = "clickable";
    tr.addEventListener("click", () => selectFund(f.fundId, f.name));
    return tr;
  }));
  for (const f of funds) {
    const control = new AbortController();
    state.streams.push(control);
    // StreamNav sends the NAV now, then on every change (and heartbeats): the iNAV, live.
    stream("Valuation/StreamNav", { fundId: f.fundId }, (u) => {
      showNav(u.nav);
      if (state.fund === f.fundId && !u.heartbeat) refreshFund();
    }, control.signal).catch(() => {});
  }
}

async function selectFund(fundId, name) {
  state.fund = fundId;
  document.querySelectorAll("#funds tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.fund === fundId));
  $("#fund").hidden = false;
  $("#fund-title").textContent = `${fundId} — ${name}`;
  await refreshFund();
}

async function refreshFund() {
  const fundId = state.fund;
  await Promise.all([loadHoldings(fundId), loadBasket(fundId), loadCapacity(fundId), loadOrders(fundId),
                     loadHistory(fundId)]);
}

async function loadHoldings(fundId) {
  try {
    const h = await call("Admin/GetHoldings", { fundId });
    fill("#holdings", (h.holdings || []).map((r) => row([r.custodianId, r.asset, figure(r.available),
      figure(r.reserved), figure(r.staked), figure(r.unbonding), r.licensed ? "yes" : "NO"], [2, 3, 4, 5])));
    $("#gauges").replaceChildren(...(h.assets || []).flatMap((a) => [
      gauge(`${a.asset} staked / committed`, a.illiquidRatio, a.stakingCap, (v, c) => v > c),
      gauge(`${a.asset} liquid / committed`, a.liquidRatio, a.liquidityBuffer, (v, c) => v < c)]));
  } catch (e) {
    fill("#holdings", [row([e.code === "permission_denied" ? "issuers and observers only" : e.message])]);
    $("#gauges").replaceChildren();
  }
}

// A ratio against its limit, as an inline SVG bar (no inline styles: the page's CSP forbids them).
function gauge(label, value, limit, breached) {
  const div = document.createElement("div");
  div.className = "gauge";
  const v = Number(value || 0), c = Number(limit || 0), w = 360;
  const colour = value && breached(v, c) ? "#c0392b" : "#3b82c4";
  div.innerHTML = `<div>${label}: <b>${value || "-"}</b> (limit ${limit || "0"})</div>` +
    `<svg width="${w}" height="14" role="img" aria-label="${label}"><rect x="0" y="3" width="${w}" height="8" rx="4" fill="#e8ebef"/>` +
    `<rect x="0" y="3" width="${Math.min(1, v) * w}" height="8" rx="4" fill="${colour}"/>` +
    `<rect x="${Math.min(1, c) * w - 1}" y="0" width="2" height="14" fill="#1b1f24"/></svg>`;
  return div;
}

async function loadBasket(fundId) {
  const b = await call("Valuation/GetBasket", { fundId });
  fill("#basket", [...(b.lines || []).map((l) => row([l.asset, figure(l.quantityPerUnit)], [1])),
    row(["cash component", figure(b.cashComponent)], [1]), row(["NAV per unit", figure(b.navPerUnit)], [1]),
    row(["creation unit (shares)", figure(b.creationUnit)], [1])]);
}

async function loadCapacity(fundId) {
  try {
    const c = await call("Dealing/GetCapacity", { fundId });
    fill("#capacity", [row(["CREATE", figure(c.create?.units || "0"), c.create?.bindingReason || "-"], [1]),
      row(["REDEEM", figure(c.redeem?.units || "0"), c.redeem?.bindingReason || "-"], [1])]);
  } catch (e) {
    fill("#capacity", [row([e.code === "permission_denied" ? "a participant's view (GetCapacity)" : e.message])]);
  }
}

async function loadOrders(fundId) {
  const orders = [];
  let token = "";
  do {
    const page = await call("Dealing/ListOrders", { fundId, pageToken: token });
    orders.push(...(page.orders || []));
    token = page.nextPageToken || "";
  } while (token);
  state.orders = orders;
  showOrders();
}

function showOrders() {
  const status = $("#f-status").value, side = $("#f-side").value;
  const participant = $("#f-participant").value.trim(), day = $("#f-date").value.trim();
  const shown = state.orders.filter((o) => (!status || o.status === status) && (!side || o.side === side)
    && (!participant || o.participantId === participant) && (!day || o.dealingDate === day));
  fill("#orders", shown.map((o) => {
    const tr = row([o.orderId, o.participantId, o.side, figure(o.units), o.status, o.rejectReason || "-",
      o.dealingDate || "-", o.settlementDate || "-", figure(o.cashAmount), o.overdue ? "OVERDUE" : ""], [3, 8]);
    if (o.overdue) tr.lastChild.className = "overdue";
    return tr;
  }));
}

async function loadHistory(fundId) {
  const { navs = [] } = await call("Valuation/ListOfficialNavs", { fundId });
  const box = $("#history");
  if (!navs.length) { box.textContent = "No official NAV struck yet."; return; }
  const values = navs.map((n) => Number(n.navPerShare || 0));
  const lo = Math.min(...values), hi = Math.max(...values), w = 640, h = 160, pad = 30;
  const x = (i) => pad + (navs.length === 1 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (navs.length - 1));
  const y = (v) => h - pad - (hi === lo ? (h - 2 * pad) / 2 : ((v - lo) * (h - 2 * pad)) / (hi - lo));
  const points = values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
  const labels = navs.map((n, i) => `<text x="${x(i)}" y="${h - 8}" text-anchor="middle">${n.dealingDate}</text>` +
    `<text x="${x(i)}" y="${y(values[i]) - 6}" text-anchor="middle">${figure(n.navPerShare)}</text>`).join("");
  box.innerHTML = `<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="official NAV per share">` +
    `<polyline fill="none" stroke="#3b82c4" stroke-width="2" points="${points}"/>` +
    values.map((v, i) => `<circle cx="${x(i)}" cy="${y(v)}" r="3" fill="#14324a"/>`).join("") + labels + "</svg>";
}

// -- participants and wallets -------------------------------------------------------------------------
async function loadParticipants() {
  let participants = [];
  try {
    ({ participants = [] } = await call("Admin/ListParticipants"));
  } catch (e) {
    fill("#participants", [row(["issuers and observers only"])]);
    return;
  }
  const { wallets = [] } = await call("Admin/ListWallets", {});
  fill("#participants", participants.map((p) => row([p.participantId, p.name, (p.eligibleFundIds || []).join(", "),
    figure(p.maxUnitsPerOrder), figure(p.maxUnitsPerDay),
    wallets.filter((w) => w.participantId === p.participantId)
      .map((w) => `${w.asset} ${w.address} (${w.status})`).join("; ") || "-"], [3, 4])));
}

// -- wiring -------------------------------------------------------------------------------------------
$("#login-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("#token").value.trim()); });
$("#signout").addEventListener("click", () => { sessionStorage.removeItem("etf-token"); location.reload(); });
for (const id of ["#f-status", "#f-side", "#f-participant", "#f-date"]) {
  $(id).addEventListener("input", showOrders);
}
if (state.token) signIn(state.token); else showLogin();
