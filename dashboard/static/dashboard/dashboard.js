// The trader's dashboard. Every figure is read from, and every action is a call to, the REST API.
import { CONFIG, api, errorText, list } from "./api.js";
import { EquityCharts } from "./charts.js";
import { el, money, percent, price, shortTime, signClass, time, trimZeros } from "./format.js";

const $ = (selector) => document.querySelector(selector);
const ACTIVITY_EVERY = 4; // activity lists refresh every 4th position poll
const CHART_EVERY_MS = 60_000; // snapshots are a minute apart

const state = {
  accounts: [],
  account: null,
  range: "day",
  tick: 0,
  editing: new Set(), // positions whose TP/SL form is open: polling leaves those rows alone
  pollTimer: null,
  chartLoadedAt: 0,
  generation: 0, // bumped on an account switch: late answers for the old account are dropped
};

let charts = null;

// ------------------------------------------------------------------ flash messages

function flash(message, kind = "info") {
  const node = $("#flash");
  node.textContent = message;
  node.className = `flash flash-${kind}`;
  node.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (node.hidden = true), kind === "error" ? 10_000 : 5_000);
}

// ------------------------------------------------------------------ accounts

async function loadAccounts() {
  state.accounts = await list("accounts/", { limit: 1000 });
  const select = $("#account-select");
  select.replaceChildren(
    ...state.accounts.map((a) => el("option", { value: String(a.id), text: `${a.is_paper_trading ? "PAPER" : "LIVE"} · ${a.name} (#${a.id})` })),
  );
  if (!state.accounts.length) {
    flash("You have no account yet: create one with POST /api/accounts/.", "info");
    return;
  }
  const wanted = new URLSearchParams(window.location.search).get("account") || localStorage.getItem("dashboard.account");
  const chosen = state.accounts.find((a) => String(a.id) === wanted) || state.accounts[0];
  await selectAccount(chosen.id);
}

async function selectAccount(id) {
  const account = state.accounts.find((a) => a.id === Number(id));
  state.account = account;
  state.generation += 1;
  state.editing.clear();
  localStorage.setItem("dashboard.account", String(account.id));
  const url = new URL(window.location.href);
  url.searchParams.set("account", account.id);
  window.history.replaceState(null, "", url);
  $("#account-select").value = String(account.id);
  showMode(account);
  showTradingState(account.trading_state);
  $("#positions tbody").replaceChildren();
  await Promise.all([refreshStatus(), refreshActivity(), refreshCharts(), refreshDemoNote(), refreshParity()]);
  document.body.dataset.loaded = String(account.id); // the account's panels are all filled once
}

function showMode(account) {
  const paper = account.is_paper_trading;
  document.body.classList.remove("mode-unknown", "mode-paper", "mode-live");
  document.body.classList.add(paper ? "mode-paper" : "mode-live");
  const badge = $("#mode-badge");
  badge.textContent = paper ? "PAPER" : "LIVE";
  badge.title = paper ? "Paper account: simulated fills, no real money." : "LIVE account: real orders with real money on AsterDEX.";
}

function showTradingState(tradingState) {
  const badge = $("#state-badge");
  badge.textContent = tradingState;
  badge.className = `state-badge state-${tradingState}`;
  $("#halt-button").disabled = tradingState === "halted";
  $("#resume-button").disabled = tradingState === "active";
}

async function control(action) {
  const account = state.account;
  const buttons = [$("#halt-button"), $("#resume-button")];
  buttons.forEach((b) => (b.disabled = true));
  try {
    const result = await api(`accounts/${account.id}/${action}/`, { method: "POST", body: { reason: "from the dashboard" } });
    showTradingState(result.trading_state);
    const failures = result.failures && result.failures.length ? ` (not cancelled: ${result.failures.join(", ")})` : "";
    flash(`Account ${account.name}: ${result.trading_state}${failures}.`, failures ? "error" : "info");
  } catch (error) {
    flash(`${action} failed: ${error.message}`, "error");
  }
  await refreshStatus();
  refreshActivity();
}

// ------------------------------------------------------------------ status and positions (polled)

async function refreshStatus() {
  const generation = state.generation;
  const status = await api(`accounts/${state.account.id}/status/`);
  if (generation !== state.generation) return;
  const account = status.account;
  showTradingState(account.trading_state);
  const wallet = account.wallet_balance;
  $("#sum-wallet").textContent = money(wallet);
  $("#sum-equity").textContent = wallet === null ? "—" : money(Number(wallet) + Number(status.unrealized_pnl));
  const upnl = $("#sum-upnl");
  upnl.textContent = money(status.unrealized_pnl, { sign: true });
  upnl.className = `value ${signClass(status.unrealized_pnl)}`;
  $("#sum-margin").textContent = money(status.margin_in_use);
  $("#sum-positions").textContent = String(status.open_positions.length);
  $("#sum-pending").textContent = String(status.pending_orders);
  renderPositions(status.open_positions);
  $("#positions-updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
}

function renderPositions(positions) {
  const body = $("#positions tbody");
  const seen = new Set();
  for (const position of positions) {
    seen.add(String(position.id));
    let row = body.querySelector(`tr[data-position-id="${position.id}"]`);
    if (!row) {
      row = positionRow(position);
      body.append(row);
    }
    updatePositionRow(row, position);
  }
  for (const row of body.querySelectorAll("tr[data-position-id]")) {
    if (!seen.has(row.dataset.positionId)) {
      state.editing.delete(row.dataset.positionId);
      row.remove();
    }
  }
  $("#positions-empty").hidden = positions.length > 0;
}

function positionRow(position) {
  // data-label: the column's name, shown beside each figure where the table becomes cards (phones).
  const cell = (field, label, cls = "num") => el("td", { class: cls, "data-field": field, "data-label": label });
  const closeButton = el("button", { type: "button", class: "danger small", text: "Close", "data-action": "close" });
  closeButton.addEventListener("click", () => confirmClose(position.id));
  const editButton = el("button", { type: "button", class: "small", text: "Edit", "data-action": "edit-protection" });
  editButton.addEventListener("click", () => openProtectionForm(position.id));
  const protection = el("td", { class: "protection", "data-field": "protection", "data-label": "TP / SL" },
    el("span", { class: "protection-view" }), editButton);
  return el("tr", { "data-position-id": position.id },
    cell("symbol", "Symbol", ""), cell("side", "Side", ""),
    cell("quantity", "Qty"), cell("entry_price", "Entry"), cell("mark_price", "Mark"), cell("unrealized_pnl", "uPnL"),
    cell("roe", "ROE"), cell("liquidation_price", "Liq. price"), protection, el("td", { class: "actions" }, closeButton));
}

function updatePositionRow(row, p) {
  row.positionData = p;
  const set = (field, text, cls) => {
    const node = row.querySelector(`[data-field="${field}"]`);
    node.textContent = text;
    if (cls !== undefined) node.className = `num ${cls}`.trim();
  };
  set("symbol", p.symbol);
  const side = row.querySelector('[data-field="side"]');
  side.replaceChildren(el("span", { class: `side side-${p.side.toLowerCase()}`, text: p.side }));
  set("quantity", trimZeros(p.quantity));
  set("entry_price", price(p.entry_price));
  set("mark_price", price(p.mark_price));
  row.querySelector('[data-field="mark_price"]').title = p.marked_at ? `marked ${time(p.marked_at)} UTC` : "not marked yet";
  set("unrealized_pnl", money(p.unrealized_pnl, { sign: true }), signClass(p.unrealized_pnl));
  set("roe", percent(p.roe), signClass(p.roe));
  set("liquidation_price", price(p.liquidation_price));
  if (state.editing.has(String(p.id))) return; // the trader is typing: keep the form as it is
  const view = row.querySelector(".protection-view");
  view.replaceChildren(
    el("span", { class: "tp", "data-field": "take_profit", text: `TP ${price(p.take_profit)}` }),
    el("span", { class: "sl", "data-field": "stop_loss", text: `SL ${price(p.stop_loss)}` }),
  );
  if (p.needs_protection) view.append(el("span", { class: "warn", text: "needs protection", title: "A protective leg could not be placed." }));
}

// TP/SL edited in place: the API validates (wrong side of the mark, beyond liquidation, not a
// number), and its messages are shown as they come.
function openProtectionForm(positionId) {
  const row = document.querySelector(`tr[data-position-id="${positionId}"]`);
  const p = row.positionData;
  state.editing.add(String(positionId));
  const cell = row.querySelector('[data-field="protection"]');
  const tp = el("input", { name: "take_profit", defaultValue: p.take_profit === null ? "" : trimZeros(p.take_profit), inputMode: "decimal", "aria-label": "Take profit", placeholder: "none" });
  const sl = el("input", { name: "stop_loss", defaultValue: p.stop_loss === null ? "" : trimZeros(p.stop_loss), inputMode: "decimal", "aria-label": "Stop loss", placeholder: "none" });
  const error = el("div", { class: "row-error", role: "alert" });
  const save = el("button", { type: "submit", class: "small primary", text: "Save" });
  const cancel = el("button", { type: "button", class: "small", text: "Cancel" });
  const form = el("form", { class: "protection-form" },
    el("label", {}, "TP ", tp), el("label", {}, "SL ", sl), save, cancel, error);
  cancel.addEventListener("click", () => closeProtectionForm(row));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    error.textContent = "";
    // Only what changed is sent: an absent field keeps its leg (a live account's unchanged leg is
    // not replaced at the venue); an emptied field is null, which removes that leg.
    const body = {};
    for (const [input, field] of [[tp, "take_profit"], [sl, "stop_loss"]]) {
      if (input.value.trim() !== input.defaultValue) body[field] = input.value.trim() || null;
    }
    if (!Object.keys(body).length) {
      closeProtectionForm(row);
      return;
    }
    try {
      await api(`positions/${positionId}/protection/`, { method: "PATCH", body });
      const said = Object.entries(body).map(([field, value]) => `${field.replace("_", "-")} ${value ?? "removed"}`);
      flash(`${p.symbol}: ${said.join(", ")}.`);
      closeProtectionForm(row);
      await refreshStatus();
      refreshActivity();
    } catch (failure) {
      error.textContent = failure.body ? errorText(failure.body) : failure.message;
      save.disabled = false;
    }
  });
  cell.replaceChildren(form);
  sl.focus();
}

function closeProtectionForm(row) {
  state.editing.delete(row.dataset.positionId);
  const cell = row.querySelector('[data-field="protection"]');
  const editButton = el("button", { type: "button", class: "small", text: "Edit", "data-action": "edit-protection" });
  editButton.addEventListener("click", () => openProtectionForm(row.dataset.positionId));
  cell.replaceChildren(el("span", { class: "protection-view" }), editButton);
  updatePositionRow(row, row.positionData);
}

function confirmClose(positionId) {
  const row = document.querySelector(`tr[data-position-id="${positionId}"]`);
  const p = row.positionData;
  const dialog = $("#close-dialog");
  $("#close-dialog-text").textContent =
    `${p.side} ${trimZeros(p.quantity)} ${p.symbol} (entry ${trimZeros(p.entry_price)}, mark ${trimZeros(p.mark_price)}, ` +
    `uPnL ${money(p.unrealized_pnl, { sign: true })}) on ${state.account.is_paper_trading ? "paper" : "LIVE"} account ${state.account.name}.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "confirm") return;
    try {
      const result = await api(`positions/${positionId}/close/`, { method: "POST", body: {} });
      const trade = result.trade;
      flash(`Closed ${p.symbol}: ${trimZeros(trade.quantity)} at ${trimZeros(trade.price)}, realized ${money(trade.realized_pnl, { sign: true })}.`);
    } catch (error) {
      flash(`Close failed: ${error.message}`, "error");
    }
    await refreshStatus();
    refreshActivity();
  };
  dialog.showModal();
}

// ------------------------------------------------------------------ activity

async function refreshActivity() {
  const generation = state.generation;
  const account = state.account.id;
  const [trades, pending, alerts, events] = await Promise.all([
    list("trades/", { account, limit: 15 }),
    list("pending-orders/", { account, status: "pending", limit: 50 }),
    list("alerts/", { account, limit: 10 }),
    list("events/", { account, limit: 15 }),
  ]);
  if (generation !== state.generation) return;
  $("#trades tbody").replaceChildren(...trades.map((t) => el("tr", { "data-trade-id": t.id },
    el("td", { text: shortTime(t.filled_at || t.created_at), title: time(t.filled_at || t.created_at) }),
    el("td", { text: t.symbol }), el("td", { text: t.side }),
    el("td", { class: "num", text: trimZeros(t.quantity) }), el("td", { class: "num", text: price(t.price) }),
    el("td", { class: `num ${signClass(t.realized_pnl)}`, text: money(t.realized_pnl, { sign: true }) }),
    el("td", { class: "num", text: money(t.fee) }), el("td", { text: t.reason }),
    el("td", { text: t.status, title: t.error_message || "" }))));
  $("#pending-orders tbody").replaceChildren(...pending.map((o) => el("tr", { "data-pending-order-id": o.id },
    el("td", { text: o.kind }), el("td", { text: o.symbol }), el("td", { text: o.side }),
    el("td", { class: "num", text: price(o.trigger_price) }), el("td", { text: o.working_type }),
    el("td", { text: `#${o.position}` }), el("td", { text: shortTime(o.created_at), title: time(o.created_at) }))));
  $("#alerts").replaceChildren(...(alerts.length ? alerts.map((a) => el("li", { class: "alert" },
    el("time", { text: shortTime(a.created_at), title: time(a.created_at) }), el("strong", { text: a.kind }), el("span", { text: a.message })))
    : [el("li", { class: "empty", text: "No alert." })]));
  $("#events").replaceChildren(...events.map((e) => el("li", {},
    el("time", { text: shortTime(e.created_at), title: time(e.created_at) }), el("strong", { text: e.kind }),
    el("span", { text: [e.subject_type && `${e.subject_type} #${e.subject_id}`, e.from_status && `${e.from_status} → ${e.to_status}`, e.message].filter(Boolean).join(" · ") }))));
}

// ------------------------------------------------------------------ charts

async function refreshCharts() {
  const generation = state.generation;
  state.chartLoadedAt = Date.now();
  const { points, bars } = await charts.load(state.account.id, state.range);
  if (generation !== state.generation) return;
  // An empty chart is only a frame: say so instead (the charts resize themselves when shown again).
  $("#equity-empty").hidden = points > 0;
  $("#equity-chart").hidden = points === 0;
  $("#pnl-empty").hidden = bars > 0;
  $("#pnl-chart").hidden = bars === 0;
}

// Demo data is marked by the audit event its seeding wrote (execution's seed_demo_equity).
async function refreshDemoNote() {
  const [seeded] = await list("events/", { account: state.account.id, kind: "demo.equity_seeded", limit: 1 });
  const note = $("#demo-note");
  note.hidden = !seeded;
  if (seeded) {
    note.textContent = `Demo data: the equity history from ${time(seeded.data.from)} to ${time(seeded.data.to)} UTC ` +
      `comes from a simulated run (${seeded.message}), not from this account's trades.`;
  }
}

// ------------------------------------------------------------------ parity (live accounts only)

async function refreshParity() {
  const panel = $("#parity-panel");
  panel.hidden = true;
  if (!CONFIG.parity_panel || state.account.is_paper_trading) return;
  let parity;
  try {
    parity = await api(`accounts/${state.account.id}/parity/`);
  } catch {
    return; // not available (404 before issue 18's endpoint): the panel stays hidden
  }
  const peak = Math.max(1, ...parity.histogram.map((b) => b.count));
  $("#parity-histogram").replaceChildren(...parity.histogram.map((b) => el("div", {
    class: "bar", title: `${b.low_bps} to ${b.high_bps} bps: ${b.count}`, style: `height:${(100 * b.count) / peak}%`,
  })));
  $("#parity-groups tbody").replaceChildren(...parity.groups.map((g) => el("tr", {},
    el("td", { text: g.symbol }), el("td", { text: g.kind }), el("td", { class: "num", text: String(g.count) }),
    ...[g.mean_bps, g.median_bps, g.p95_bps, g.fee_diff, g.mean_trigger_delay_ms].map((v) => el("td", { class: "num", text: trimZeros(v) })))));
  panel.hidden = false;
}

// ------------------------------------------------------------------ polling

async function poll() {
  try {
    if (state.account) {
      state.tick += 1;
      await refreshStatus();
      if (state.tick % ACTIVITY_EVERY === 0) await refreshActivity();
      if (Date.now() - state.chartLoadedAt > CHART_EVERY_MS) await refreshCharts();
    }
  } catch (error) {
    flash(`Refresh failed: ${error.message}`, "error");
  } finally {
    // Chained, not an interval: a slow answer never stacks requests.
    state.pollTimer = setTimeout(poll, CONFIG.poll_ms);
  }
}

function bind() {
  const failed = (what) => (error) => flash(`${what} failed: ${error.message}`, "error");
  $("#account-select").addEventListener("change", (event) => selectAccount(event.target.value).catch(failed("Loading the account")));
  $("#halt-button").addEventListener("click", () => control("halt").catch(failed("Halt")));
  $("#resume-button").addEventListener("click", () => control("resume").catch(failed("Resume")));
  for (const button of document.querySelectorAll(".range button")) {
    button.addEventListener("click", async () => {
      state.range = button.dataset.range;
      for (const other of document.querySelectorAll(".range button")) other.setAttribute("aria-pressed", String(other === button));
      await refreshCharts().catch(failed("Loading the chart"));
    });
  }
}

async function main() {
  charts = new EquityCharts($("#equity-chart"), $("#pnl-chart"));
  bind();
  try {
    await loadAccounts();
  } catch (error) {
    flash(`Could not load the accounts: ${error.message}`, "error");
  }
  state.pollTimer = setTimeout(poll, CONFIG.poll_ms);
}

main();
