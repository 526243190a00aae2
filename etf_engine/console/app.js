// The etf-engine operations console: plain JS modules, no build step, nothing fetched but the engine's
// own Connect API (same origin). The token is kept in sessionStorage: a reload does not ask again.
// It asks the server who the token is (Diagnostics.WhoAmI: the principal, its role and the RPCs the
// role may call, from the server's one role table) and makes no call that the role would be refused.
// Price ages are measured on the engine's clock (Diagnostics.GetLeader), never on the browser's: a
// test clock may run hours ahead.
const PKG = "etf_engine.v1";
const SVG = "http://www.w3.org/2000/svg";
const $ = (sel) => document.querySelector(sel);
const state = {
  token: sessionStorage.getItem("etf-token") || "", me: null, methods: new Set(), offset: 0, testClock: false,
  funds: [], fund: "", orders: [], streams: [], timers: [],
};

// -- figures as the CLI prints them: exact decimal strings, thousands separators, never floats --------
export function figure(text) {
  if (text === undefined || text === null || text === "") return "-";
  const s = String(text);
  const sign = s.startsWith("-") ? "-" : "";
  const [whole, frac] = s.replace(/^-/, "").split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return sign + grouped + (frac !== undefined ? "." + frac : "");
}

// A decimal string as an integer of 10^-dp units (BigInt): compared and converted without a float.
export function scaled(text, dp) {
  const s = String(text || "0");
  const [whole, frac = ""] = s.replace(/^-/, "").split(".");
  const value = BigInt(whole || "0") * 10n ** BigInt(dp) + BigInt((frac + "0".repeat(dp)).slice(0, dp) || "0");
  return s.startsWith("-") ? -value : value;
}

// A 4 dp fraction as a percentage, exactly: "0.2983" -> "29.83%".
export function percent(text) {
  if (text === undefined || text === null || text === "") return "-";
  const v = scaled(text, 4), a = v < 0n ? -v : v;
  return `${v < 0n ? "-" : ""}${a / 100n}.${String(a % 100n).padStart(2, "0")}%`;
}

export function utc(ms) {
  if (!ms || ms === "0") return "-";
  return new Date(Number(ms)).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function duration(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// -- the API --------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

const allowed = (method) => state.methods.has(`/${PKG}.${method}`);

function mayCall(method) {
  // WhoAmI is every role's, and it is what says what the rest are.
  if (method !== "Diagnostics/WhoAmI" && !allowed(method)) {
    throw new ApiError(0, "not_called", `${method}: not for the role ${state.me?.role}`);
  }
}

async function call(method, body = {}) {
  mayCall(method);
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
  mayCall(method);
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

// -- the page's pieces ------------------------------------------------------------------------------------
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

function note(sel, text) {
  const box = $(sel);
  box.textContent = text;
  box.hidden = !text;
}

function svg(tag, attrs = {}, text = "") {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text) el.textContent = text;
  return el;
}

// -- sign-in: who the token is, and the engine's clock ----------------------------------------------------
async function signIn(token) {
  state.token = token;
  let me;
  try {
    me = await call("Diagnostics/WhoAmI");
  } catch (e) {
    sessionStorage.removeItem("etf-token");
    $("#login-error").textContent = e.status === 401 ? "That token is not known to this server." : e.message;
    showLogin();
    return;
  }
  sessionStorage.setItem("etf-token", token);
  state.me = me;
  state.methods = new Set(me.methods || []);
  $("#who").textContent = `Signed in as ${me.principal} (${me.role}${me.participantId ? " " + me.participantId : ""})`;
  $("#who").dataset.role = me.role;
  $("#login").hidden = true; $("#app").hidden = false; $("#signout").hidden = false;
  await syncClock();
  state.timers.push(setInterval(() => syncClock().catch(() => {}), 30_000), setInterval(showAges, 1000));
  await loadFunds();
  await loadParticipants();
  await loadInstructions();
  await loadBreaks();
  state.timers.push(setInterval(() => loadInstructions().catch(() => {}), 5000),
                    setInterval(() => loadBreaks().catch(() => {}), 5000));
}

function showLogin() { $("#login").hidden = false; $("#app").hidden = true; $("#signout").hidden = true; }

// The engine's time as this browser's clock plus an offset, measured at the middle of a GetLeader call.
async function syncClock() {
  if (!allowed("Diagnostics/GetLeader")) return;
  const sent = Date.now();
  const info = await call("Diagnostics/GetLeader");
  const back = Date.now();
  state.offset = Number(info.nowUnixMs || 0) - Math.round((sent + back) / 2);
  state.testClock = Boolean(info.testClock);
  showClock();
}

const engineNow = () => Date.now() + state.offset;

function showClock() {
  const skew = Math.abs(state.offset) >= 60_000
    ? `, ${duration(state.offset)} ${state.offset > 0 ? "ahead of" : "behind"} this browser` : "";
  $("#clock").textContent = `engine clock ${utc(engineNow())}${state.testClock ? " (test clock" + skew + ")" : skew ? ` (${skew.slice(2)})` : ""}`;
}

// -- funds and the live NAV ---------------------------------------------------------------------------
function age(asOf) {
  if (!asOf || asOf === "0") return "-";
  return duration(Math.max(0, engineNow() - Number(asOf)));
}

function showAges() {
  showClock();
  document.querySelectorAll("#funds tr[data-fund]").forEach((tr) => {
    tr.querySelector(".age").textContent = age(tr.dataset.asOf);
  });
  document.querySelectorAll("#breaks tr[data-break]").forEach((tr) => {
    tr.querySelector(".age").textContent = age(tr.dataset.openedAt);
  });
}

function showNav(nav) {
  const tr = document.querySelector(`#funds tr[data-fund="${nav.fundId}"]`);
  if (!tr) return;
  tr.querySelector(".nav").textContent = figure(nav.nav);
  tr.querySelector(".nps").textContent = figure(nav.navPerShare);
  tr.querySelector(".shares").textContent = figure(nav.sharesOutstanding || "0");
  tr.querySelector(".cash").textContent = figure(nav.cash);
  tr.querySelector(".accrued").textContent = figure(nav.accruedFees || "0.00");
  tr.dataset.asOf = nav.asOf || "0";
  tr.querySelector(".age").textContent = age(nav.asOf);
  const stale = tr.querySelector(".stale-flag");
  stale.textContent = nav.stale ? "STALE" : "fresh";
  stale.className = "stale-flag" + (nav.stale ? " stale" : "");
}

async function loadFunds() {
  state.streams.forEach((c) => c.abort());
  state.streams = [];
  const { funds = [] } = await call("Valuation/ListFunds");
  state.funds = funds;
  fill("#funds", funds.map((f) => {
    const tr = row([f.fundId, f.name, f.dealingStatus || "OPEN", cell("-", "num nav"), cell("-", "num nps"),
                    cell("-", "num shares"), cell("-", "num cash"), cell("-", "num accrued"), cell("-", "num age"),
                    cell("-", "stale-flag")]);
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
  resetReports();
  await refreshFund();
}

// One refresh at a time; a change during one asks for one more.
let refreshing = null, again = false;
function refreshFund() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      const fundId = state.fund;
      await Promise.allSettled([loadHoldings(fundId), loadBasket(fundId), loadCapacity(fundId), loadOrders(fundId),
                                loadHistory(fundId)]);
    } while (again);
  })().finally(() => { refreshing = null; });
  return refreshing;
}

async function loadHoldings(fundId) {
  if (!allowed("Admin/GetHoldings")) {
    note("#holdings-note", "Holdings by custodian are shown to issuers and observers (GetHoldings).");
    $("#holdings").hidden = true;
    $("#gauges").replaceChildren(document.createTextNode("The staking cap and liquidity buffer are shown to issuers "
                                                         + "and observers (GetHoldings)."));
    return;
  }
  note("#holdings-note", "");
  $("#holdings").hidden = false;
  const h = await call("Admin/GetHoldings", { fundId });
  fill("#holdings", (h.holdings || []).map(holdingRow));
  // The management fee taken in kind at the strikes and not yet paid out (PayFee): no longer the fund's.
  const payable = (h.feePayable || []).map((l) => `${figure(l.quantity)} ${l.asset}`);
  note("#fee-payable", `Fee payable (taken in kind, not yet paid): ${payable.length ? payable.join(", ") : "none"}`);
  $("#gauges").replaceChildren(...(h.assets || []).flatMap((a) => [
    gauge(a.asset, "cap", a.illiquidRatio, a.stakingCap || "0"),
    gauge(a.asset, "buffer", a.liquidRatio, a.liquidityBuffer || "0")]));
}

// A holding by custodian, with its storage tiers (SPEC §18): cold, warm and hot against what the storage
// ratio requires in cold and allows in hot and warm. A holding in breach (cold below cold required) is
// shaded and flagged; hot left above its allowance for longer than the custodian's max_hot_seconds is
// flagged idle.
function holdingRow(r) {
  const t = r.tiers || {};
  const tr = row([r.custodianId, r.asset, figure(r.available), figure(r.reserved), figure(r.staked),
    figure(r.unbonding), r.licensed ? "yes" : "NO", cell(figure(t.cold || "0"), "num cold"), figure(t.warm || "0"),
    figure(t.hot || "0"), figure(t.coldRequired || "0"), figure(t.hotAllowance || "0"), cell("", "storage")],
  [2, 3, 4, 5, 8, 9, 10, 11]);
  tr.dataset.custodian = r.custodianId;
  tr.dataset.asset = r.asset;
  const flags = tr.querySelector(".storage");
  if (t.breach) {
    tr.classList.add("storage-breach");
    const flag = document.createElement("span");
    flag.className = "breach-flag";
    flag.textContent = "BREACH: cold below required";
    flags.append(flag);
  }
  if (t.idle) {
    const flag = document.createElement("span");
    flag.className = "idle-flag";
    flag.textContent = "IDLE in hot";
    flags.append(flags.childNodes.length ? " " : "", flag);
  }
  if (!flags.childNodes.length) flags.textContent = r.tiers ? "ok" : "-";
  return tr;
}

// A ratio against its limit, as an SVG bar: the staked share of what is committed against the staking
// cap (a maximum), the liquid share against the liquidity buffer (a minimum). The side of the limit
// that breaches it is shaded; a breach turns the bar red and says so. No inline styles (the CSP).
function gauge(asset, kind, value, limit) {
  const isCap = kind === "cap";
  const known = value !== undefined && value !== "";
  const breached = known && (isCap ? scaled(value, 4) > scaled(limit, 4) : scaled(value, 4) < scaled(limit, 4));
  const div = document.createElement("div");
  div.className = `gauge ${kind}${breached ? " breach" : ""}`;
  div.dataset.asset = asset;
  const text = document.createElement("div");
  const figureText = document.createElement("b");
  figureText.textContent = known ? percent(value) : "- (nothing committed)";
  text.append(`${asset} ${isCap ? "staked" : "liquid"} / committed: `, figureText,
              ` — ${isCap ? "cap (maximum)" : "buffer (minimum)"} ${percent(limit)}`);
  if (breached) {
    const flag = document.createElement("span");
    flag.className = "breach-flag";
    flag.textContent = isCap ? "BREACH: above the cap" : "BREACH: below the buffer";
    text.append(" ", flag);
  }
  const w = 360, v = known ? Math.min(1, Number(scaled(value, 4)) / 10000) : 0;
  const c = Math.min(1, Number(scaled(limit, 4)) / 10000);
  const bar = svg("svg", { width: w, height: 16, role: "img",
                           "aria-label": `${asset} ${isCap ? "staking cap" : "liquidity buffer"} gauge` });
  bar.append(svg("rect", { x: 0, y: 4, width: w, height: 8, rx: 4, class: "track" }),
             svg("rect", { x: isCap ? c * w : 0, y: 4, width: isCap ? (1 - c) * w : c * w, height: 8, class: "forbidden" }),
             svg("rect", { x: 0, y: 4, width: v * w, height: 8, rx: 4, class: `bar${breached ? " breach" : ""}` }),
             svg("rect", { x: Math.max(0, c * w - 1), y: 0, width: 2, height: 16, class: "limit" }));
  div.append(text, bar);
  return div;
}

async function loadBasket(fundId) {
  const b = await call("Valuation/GetBasket", { fundId });
  fill("#basket", [...(b.lines || []).map((l) => row([l.asset, figure(l.quantityPerUnit)], [1])),
    row(["cash component", figure(b.cashComponent)], [1]), row(["NAV per unit", figure(b.navPerUnit)], [1]),
    row(["creation unit (shares)", figure(b.creationUnit)], [1])]);
}

async function loadCapacity(fundId) {
  const box = $("#capacity-box");
  box.hidden = !allowed("Dealing/GetCapacity");  // a participant's own figure
  if (box.hidden) return;
  const c = await call("Dealing/GetCapacity", { fundId });
  fill("#capacity", [row(["CREATE", figure(c.create?.units || "0"), c.create?.bindingReason || "-"], [1]),
    row(["REDEEM", figure(c.redeem?.units || "0"), c.redeem?.bindingReason || "-"], [1])]);
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
    const tr = row([o.orderId, o.clientOrderId || "-", o.participantId, o.side, figure(o.units), o.status,
      o.rejectReason || "-", utc(o.createdAt), utc(o.updatedAt), o.dealingDate || "-", o.settlementDate || "-",
      figure(o.cashAmount), figure(o.fee), o.overdue ? "OVERDUE" : ""], [4, 11, 12]);
    if (o.overdue) tr.lastChild.className = "overdue";
    return tr;
  }));
}

// The official NAV per share by dealing date, with its axes: the y axis from the lowest to the highest
// value (exact labels), the x axis the dealing dates.
async function loadHistory(fundId) {
  const { navs = [] } = await call("Valuation/ListOfficialNavs", { fundId });
  if (fundId === state.fund) showReportDates(navs);
  const box = $("#history");
  if (!navs.length) { box.textContent = "No official NAV struck yet."; return; }
  const exact = navs.map((n) => scaled(n.navPerShare || "0", 4));
  let lo = exact.reduce((a, b) => (b < a ? b : a)), hi = exact.reduce((a, b) => (b > a ? b : a));
  if (lo === hi) { lo -= lo / 100n || 1n; hi += hi / 100n || 1n; }  // a flat line sits mid-chart
  const w = 640, h = 210, left = 78, right = 24, top = 14, bottom = 46;
  const x = (i) => left + (navs.length === 1 ? (w - left - right) / 2 : (i * (w - left - right)) / (navs.length - 1));
  const y = (v) => h - bottom - (Number(v - lo) * (h - top - bottom)) / Number(hi - lo);
  const four = (v) => figure(`${v / 10000n}.${String(v % 10000n).padStart(4, "0")}`);
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img",
                             "aria-label": "official NAV per share by dealing date", class: "chart" });
  chart.append(svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, class: "axis x-axis" }),
               svg("line", { x1: left, y1: top, x2: left, y2: h - bottom, class: "axis y-axis" }));
  for (const v of [lo, (lo + hi) / 2n, hi]) {
    chart.append(svg("line", { x1: left - 4, y1: y(v), x2: w - right, y2: y(v), class: "grid-line" }),
                 svg("text", { x: left - 8, y: y(v) + 4, "text-anchor": "end", class: "tick y-tick" }, four(v)));
  }
  const every = Math.ceil(navs.length / 8);
  navs.forEach((n, i) => {
    if (i % every === 0 || i === navs.length - 1) {
      chart.append(svg("line", { x1: x(i), y1: h - bottom, x2: x(i), y2: h - bottom + 4, class: "axis" }),
                   svg("text", { x: x(i), y: h - bottom + 17, "text-anchor": "middle", class: "tick x-tick" },
                       n.dealingDate));
    }
  });
  chart.append(svg("text", { x: (left + w - right) / 2, y: h - 6, "text-anchor": "middle", class: "axis-title" },
                   "dealing date"),
               svg("text", { x: 14, y: (top + h - bottom) / 2, "text-anchor": "middle", class: "axis-title",
                             transform: `rotate(-90 14 ${(top + h - bottom) / 2})` }, "NAV per share"),
               svg("polyline", { fill: "none", class: "line",
                                 points: exact.map((v, i) => `${x(i)},${y(v)}`).join(" ") }));
  exact.forEach((v, i) => {
    const dot = svg("circle", { cx: x(i), cy: y(v), r: 3, class: "point" });
    dot.append(svg("title", {}, `${navs[i].dealingDate}: ${figure(navs[i].navPerShare)}`));
    chart.append(dot);
  });
  box.replaceChildren(chart);
}

// -- reports (SPEC §21) -------------------------------------------------------------------------------
// Each report the role may call, as a CSV download of GET /reports/NAME.csv: fetched with the session's
// token (a header, which a plain link cannot carry), then handed to the browser as a Blob. The daily
// report of the chosen dealing date (one with an official NAV) is shown on screen too (Reports.DailyReport).
const REPORTS = [["daily", "DailyReport"], ["holdings", "HoldingsReport"], ["roll-forward", "RollForward"],
  ["staking", "StakingReport"], ["breaks", "BreakReport"], ["participant-activity", "ParticipantActivity"]];

function resetReports() {
  const shown = REPORTS.filter(([, rpc]) => allowed(`Reports/${rpc}`));
  $("#reports-box").hidden = !shown.length;
  $("#r-date").replaceChildren();
  $("#r-from").value = "";
  $("#r-to").value = utc(engineNow()).slice(0, 10);
  $("#report-error").textContent = "";
  $("#daily-caption").textContent = "";
  fill("#daily-report", []);
  $("#report-links").replaceChildren(...shown.map(([name]) => {
    const link = document.createElement("a");
    link.href = `/reports/${name}.csv`;
    link.textContent = `${name}.csv`;
    link.dataset.report = name;
    link.addEventListener("click", (ev) => { ev.preventDefault(); downloadReport(name); });
    return link;
  }));
}

// The dealing dates with an official NAV, newest first, keeping the one chosen; a first date shows its
// daily report, and starts the period of the other reports.
function showReportDates(navs) {
  const select = $("#r-date");
  const dates = navs.map((n) => n.dealingDate).reverse();
  if (dates.join() === [...select.options].map((o) => o.value).join()) return;
  const chosen = select.value;
  select.replaceChildren(...dates.map((d) => new Option(d, d)));
  select.value = dates.includes(chosen) ? chosen : dates[0] || "";
  if (dates.length && !$("#r-from").value) $("#r-from").value = dates[dates.length - 1];
  if (dates.length && $("#r-to").value < dates[0]) $("#r-to").value = dates[0];
  if (select.value !== chosen) loadDaily();
}

function reportQuery(name) {
  const query = { fund_id: state.fund };
  if (name === "daily") {
    query.dealing_date = $("#r-date").value;
    if (!query.dealing_date) throw new Error("no official NAV struck yet, so no daily report");
    const closing = $("#r-closing").value.trim();
    if (closing) query.closing_price = closing;
  } else if (name !== "holdings") {  // the period's reports (holdings: now)
    query.from = $("#r-from").value;
    query.to = $("#r-to").value;
    if (!query.from || !query.to) throw new Error("choose the period (from and to)");
  }
  return new URLSearchParams(query).toString();
}

async function downloadReport(name) {
  $("#report-error").textContent = "";
  try {
    const reply = await fetch(`/reports/${name}.csv?${reportQuery(name)}`,
                              { headers: { "Authorization": `Bearer ${state.token}` } });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}: ${(await reply.text()).trim()}`);
    const named = /filename="([^"]+)"/.exec(reply.headers.get("Content-Disposition") || "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await reply.blob());
    link.download = named ? named[1] : `${name}.csv`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  } catch (e) {
    $("#report-error").textContent = `${name}.csv: ${e.message}`;
  }
}

// The daily report's figures, as the CLI prints them; its lists as one line each.
async function loadDaily() {
  const fundId = state.fund, date = $("#r-date").value, closing = $("#r-closing").value.trim();
  if (!allowed("Reports/DailyReport") || !date) return;
  let r;
  try {
    r = await call("Reports/DailyReport", { fundId, dealingDate: date, ...(closing ? { closingPrice: closing } : {}) });
  } catch (e) {
    $("#report-error").textContent = `daily report: ${e.message}`;
    return;
  }
  if (fundId !== state.fund || date !== $("#r-date").value) return;  // another was chosen meanwhile
  $("#report-error").textContent = "";
  const nav = r.officialNav || {};
  const counted = (items = [], text) => `${items.length}${items.length ? ": " + items.map(text).join("; ") : ""}`;
  const figures = [
    ["nav", "NAV", figure(nav.nav)], ["nav_per_share", "NAV per share", figure(nav.navPerShare)],
    ["nav_per_creation_unit", "NAV per creation unit", figure(r.navPerCreationUnit)],
    ["cash_component", "cash component (struck)", figure(r.cashComponent)],
    ["estimated_cash_component", "estimated cash component (next PCF)", figure(r.estimatedCashComponent)],
    ["shares_outstanding", "shares outstanding", figure(r.sharesOutstanding || "0")],
    ["shares_created", "shares created", figure(r.sharesCreated || "0")],
    ["shares_redeemed", "shares redeemed", figure(r.sharesRedeemed || "0")],
    ["fee", "fee accrued at the strike", figure(r.fee)], ["accrued_fees", "accrued fees", figure(r.accruedFees)],
    ...(r.orders || []).filter((t) => t.count).map((t) => [`orders ${t.side} ${t.status}`,
      `orders ${t.side} ${t.status}`, `${figure(t.count)} (${figure(t.units || "0")} units)`]),
    ...(r.ratios || []).flatMap((a) => [
      [`staking_ratio ${a.asset}`, `${a.asset} staked / committed (cap)`,
       `${percent(a.stakingRatio)} (${percent(a.stakingCap || "0")})`],
      [`liquid_ratio ${a.asset}`, `${a.asset} liquid / committed (buffer)`,
       `${percent(a.liquidRatio)} (${percent(a.liquidityBuffer || "0")})`]]),
    ["storage_breaches", "storage breaches", counted(r.storageBreaches, (b) => `${b.custodianId} ${b.asset}`)],
    ["open_breaks", "open breaks", counted(r.openBreaks, (b) => b.breakId)],
    ["overdue_orders", "overdue orders", counted(r.overdueOrders, (o) => o.orderId)],
    ["closing_price", "closing price", figure(r.closingPrice)],
    ["premium_discount", "premium / discount", percent(r.premiumDiscount)],
  ];
  $("#daily-caption").textContent = `Daily report: ${fundId}, dealing date ${date}`;
  fill("#daily-report", figures.map(([field, label, value]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = label;
    tr.append(th, cell(value, "num"));
    tr.dataset.field = field;
    return tr;
  }));
}

// -- instructions pending approval (SPEC §20) ---------------------------------------------------------
async function loadInstructions() {
  const box = $("#instructions-box");
  box.hidden = !allowed("Admin/ListInstructions");  // issuers and observers
  if (box.hidden) return;
  const { instructions = [] } = await call("Admin/ListInstructions", { status: "PENDING" });
  fill("#instructions", instructions.length ? instructions.map((i) => {
    const tr = row([i.instructionId, i.rpc, requestText(i.request), i.proposedBy, utc(i.proposedAt)]);
    tr.dataset.instruction = i.instructionId;
    return tr;
  }) : [row(["none pending", "", "", "", ""])]);
}

// An instruction's request (JSON) as "field value" pairs, the empty ones left out; amounts as figures.
const AMOUNTS = new Set(["amount", "quantity", "delta"]);
function requestText(json) {
  let request;
  try { request = JSON.parse(json); } catch { return json; }
  const shown = (k, v) => (typeof v === "object" ? JSON.stringify(v)
    : typeof v === "string" && (AMOUNTS.has(k) || /^-?\d+\.\d+$/.test(v)) ? figure(v) : String(v));
  return Object.entries(request).filter(([, v]) => v !== "" && v !== null && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => `${k} ${shown(k, v)}`).join(", ");
}

// -- open breaks (SPEC §19) ---------------------------------------------------------------------------
// Every fund's OPEN breaks, oldest first, with their age on the engine's clock (refreshed every second);
// an UNEXPLAINED one is flagged: it waits for ResolveBreak (and may hold redemptions back).
async function loadBreaks() {
  const box = $("#breaks-box");
  box.hidden = !allowed("Admin/ListBreaks");  // issuers and observers
  if (box.hidden) return;
  const { breaks = [] } = await call("Admin/ListBreaks", { status: "OPEN" });
  fill("#breaks", breaks.length ? breaks.map(breakRow) : [row(["no open break", "", "", "", "", "", "", "", "", "",
                                                                 "", "", "", ""])]);
}

function breakRow(b) {
  const unexplained = b.classification === "UNEXPLAINED";
  const flag = document.createElement("td");
  const label = document.createElement("span");
  label.className = unexplained ? "breach-flag" : "timing-flag";
  label.textContent = b.classification;
  flag.append(label);
  const tr = row([b.breakId, b.fundId, b.custodianId, b.asset, b.tier ? `${b.bucket} ${b.tier}` : b.bucket,
    figure(b.book || "0"), figure(b.statement || "0"), figure(b.difference || "0"), flag, utc(b.asOf),
    utc(b.openedAt), cell(age(b.openedAt), "num age"), b.reference,
    (b.orderIds || []).length ? `${b.orderIds.join(", ")} (${(b.txHashes || []).join(", ")})` : "-"], [5, 6, 7]);
  tr.dataset.break = b.breakId;
  tr.dataset.openedAt = b.openedAt || "0";
  if (unexplained) tr.classList.add("unexplained");
  return tr;
}

// -- participants and wallets -------------------------------------------------------------------------
async function loadParticipants() {
  if (allowed("Admin/ListParticipants")) {
    const { participants = [] } = await call("Admin/ListParticipants");
    const { wallets = [] } = allowed("Admin/ListWallets") ? await call("Admin/ListWallets", {}) : {};
    fill("#participants", participants.map((p) => row([p.participantId, p.name, (p.eligibleFundIds || []).join(", "),
      figure(p.maxUnitsPerOrder), figure(p.maxUnitsPerDay), walletsOf(wallets, p.participantId)], [3, 4])));
  } else if (allowed("Admin/ListWallets") && state.me?.participantId) {  // a participant: itself, its wallets
    $("#participants-title").textContent = "Your wallets";
    const { wallets = [] } = await call("Admin/ListWallets", {});
    fill("#participants", [row([state.me.participantId, state.me.principal, state.funds.map((f) => f.fundId).join(", "),
      "-", "-", walletsOf(wallets, state.me.participantId)], [3, 4])]);
  } else {
    $("#participants-title").textContent = "Participants and wallets (issuers and observers)";
    fill("#participants", []);
  }
}

function walletsOf(wallets, participantId) {
  return wallets.filter((w) => w.participantId === participantId)
    .map((w) => `${w.asset} ${w.address} (${w.status})`).join("; ") || "-";
}

// -- wiring -------------------------------------------------------------------------------------------
$("#login-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("#token").value.trim()); });
$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem("etf-token");
  state.timers.forEach(clearInterval);
  location.reload();
});
for (const id of ["#f-status", "#f-side", "#f-participant", "#f-date"]) {
  $(id).addEventListener("input", showOrders);
}
$("#r-date").addEventListener("change", loadDaily);
$("#r-closing").addEventListener("change", loadDaily);
if (state.token) signIn(state.token); else showLogin();
