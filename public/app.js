// The live dashboard. REST (README "API") gives the state on load and after every reconnect;
// the /ws WebSocket keeps it current: `ticks` (the newest tick per symbol, every 50 ms at
// most) and `signal` messages. This module wires the views together; each view is in js/.

import { api, liveTick, toSignal } from "./js/api.js";
import { CandleBook } from "./js/candles.js";
import { ClusterView } from "./js/cluster-view.js";
import { LiveConnection } from "./js/connection.js";
import { DesktopNotifications } from "./js/desktop-notifications.js";
import { fmt, setText, timeZone } from "./js/dom.js";
import { PriceChart } from "./js/price-chart.js";
import { ReportView } from "./js/report-view.js";
import { SignalsFeed } from "./js/signals-feed.js";
import { SymbolsTable } from "./js/symbols-table.js";

const $ = id => document.getElementById(id);
const CLUSTER_POLL_MS = 3000;
const CLUSTER_POLL_HIDDEN_MS = 15000;
const GAP_FILL_EVERY_MS = 1000;
const HISTORY_TICKS = 5000;
const SIGNALS_PER_SYMBOL = 1000;
/** Signals fetched after a reconnect: the feed shows 100, the rest still reach the table and chart. */
const CATCH_UP_SIGNALS = 1000;
const REPORT_REFRESH_MS = 10000;
const REPORT_AFTER_TICK_MS = 2000;

const state = {
  selected: null,
  book: new CandleBook(),
  /** The selected symbol's signals: the chart's markers. */
  signals: [],
  /** While a symbol's history loads, its live ticks and signals wait here, then merge by seq. */
  loading: null,
  thresholds: { oversold: 30, overbought: 70 },
  gapFill: null,
  gapFrom: null,
  lastGapFill: 0,
  ready: false,
  /** From a reconnect until the REST state is reloaded: what the page holds may be gone from the server. */
  resyncing: false,
  reportLoadedAt: 0,
};

/** Null until the chart library has loaded; the table, feed and cluster work without it. */
let chart = null;

const table = new SymbolsTable({
  table: $("symbols"),
  search: $("search"),
  count: $("symbols-count"),
  onSelect: symbol => void selectSymbol(symbol),
});
const feed = new SignalsFeed({
  list: $("signals"),
  toasts: $("toasts"),
  onSelect: symbol => void selectSymbol(symbol),
});
const desktop = new DesktopNotifications({
  toggle: $("desktop-notifications"),
  status: $("desktop-notifications-status"),
  onSelect: symbol => void selectSymbol(symbol),
});
const cluster = new ClusterView({ root: $("cluster"), summary: $("cluster-summary") });
const report = new ReportView($("report"));
const connection = new LiveConnection({ onState: showConnection, onMessage, onOpen });

const num = v => (v === null || v === undefined ? null : Number(v));

/** The symbol named by the URL (`/#AAPL`), or null when the fragment is not a ticker. */
function symbolFromHash() {
  let text;
  try {
    text = decodeURIComponent(location.hash.slice(1)).toUpperCase();
  } catch {
    return null;
  }
  // TICKER_PATTERN of the ingest schema (domain/messages.ts): anything else has no data to show.
  return /^[A-Z0-9]{1,10}(?:[.-][A-Z0-9]{1,6}){0,2}$/.test(text) ? text : null;
}

/**
 * Retries a load while the server answers 503 or cannot be reached: a restarted node accepts
 * the WebSocket as soon as it listens, a moment before its query and actors services are up.
 */
async function retrying(load, attempts = 6) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await load();
    } catch (err) {
      const retryable = err.status === 503 || err instanceof TypeError;
      if (!retryable || attempt >= attempts) throw err;
      await new Promise(resolve => setTimeout(resolve, 250 * 2 ** attempt));
    }
  }
}

// ---- selection and history --------------------------------------------------------------

async function selectSymbol(symbol) {
  if (!symbol) return;
  state.selected = symbol;
  table.select(symbol);
  setText($("chart-title"), `${symbol} · 1-minute candles`);
  $("chart").setAttribute("aria-label", `Price chart of ${symbol}`);
  if (symbolFromHash() !== symbol) window.history.replaceState(null, "", `#${encodeURIComponent(symbol)}`);
  report.show(null);
  await Promise.all([loadSelected(), loadLiveState(symbol), loadReport()]);
}

/** The selected symbol's report; refreshed on every signal of it and every few seconds. */
async function loadReport() {
  const symbol = state.selected;
  // While reconnecting, what the page holds may be gone from the server: wait for the reload.
  if (!symbol || state.resyncing || connection.state !== "live") return;
  // A symbol the server does not know (yet) has no report: asking would only log a 404.
  if (!table.symbols().includes(symbol)) {
    report.show(null);
    return;
  }
  state.reportLoadedAt = Date.now();
  try {
    const r = await api.report(symbol);
    if (state.selected === symbol) report.show(r);
  } catch (err) {
    console.warn(err);
  }
}

async function loadSelected() {
  const symbol = state.selected;
  const loading = { symbol, ticks: [], signals: [] };
  state.loading = loading;
  showChartMessage(`Loading ${symbol}…`);
  try {
    const [ticks, signals] = await retrying(() =>
      Promise.all([
        api.history(symbol, { limit: HISTORY_TICKS }),
        api.signals({ symbol, limit: SIGNALS_PER_SYMBOL }),
      ]),
    );
    if (state.loading !== loading) return;
    const book = new CandleBook();
    book.addAll(ticks);
    book.addAll(loading.ticks);
    const known = new Set(signals.map(s => s.seq));
    state.book = book;
    state.signals = [...signals, ...loading.signals.filter(s => !known.has(s.seq))];
    state.loading = null;
    drawChart();
  } catch (err) {
    if (state.loading !== loading) return;
    state.loading = null;
    showChartMessage(`Could not load ${symbol}: ${err.message}`);
    console.warn(err);
  }
}

async function loadLiveState(symbol, { retry = true } = {}) {
  // Only a symbol with results has a live actor: asking for another one is a 404 in the console.
  if (!table.has(symbol)) {
    setText($("live-state"), `No live actor holds ${symbol} yet.`);
    return;
  }
  try {
    const live = await (retry ? retrying(() => api.liveState(symbol)) : api.liveState(symbol));
    const s = live.state.settings;
    if (s) setThresholds({ oversold: s.rsiOversold, overbought: s.rsiOverbought });
    if (symbol !== state.selected) return;
    setText(
      $("live-state"),
      `Live actor on node ${live.nodeID}, partition ${live.partition}: ${fmt.whole(live.state.seq)} ticks applied, last offset ${live.state.lastOffset}.`,
    );
  } catch (err) {
    if (symbol !== state.selected) return;
    setText(
      $("live-state"),
      err.status === 404
        ? `No live actor holds ${symbol} yet.`
        : `Live actor state unavailable: ${err.message}`,
    );
  }
}

function setThresholds(thresholds) {
  const { oversold, overbought } = state.thresholds;
  if (thresholds.oversold === oversold && thresholds.overbought === overbought) return;
  state.thresholds = thresholds;
  table.setThresholds(thresholds);
  chart?.setThresholds(thresholds);
}

function drawChart() {
  if (!chart || !state.selected) return;
  chart.show(state.selected, state.book, state.signals);
  showChartMessage(state.book.tickCount === 0 ? `No ticks for ${state.selected} yet.` : null);
}

function showChartMessage(text) {
  const message = $("chart-message");
  message.hidden = text === null;
  if (text !== null) setText(message, text);
}

/**
 * The WebSocket sends only the newest tick per symbol per flush: a seq that jumps means ticks
 * were coalesced away. Their candles' volume, high and low need them, so they come from REST.
 */
function scheduleGapFill(from) {
  state.gapFrom = Math.min(state.gapFrom ?? from, from);
  if (state.gapFill) return;
  const wait = Math.max(0, state.lastGapFill + GAP_FILL_EVERY_MS - Date.now());
  state.gapFill = new Promise(resolve => setTimeout(resolve, wait))
    .then(async () => {
      const { selected: symbol, book } = state;
      const since = state.gapFrom;
      state.gapFrom = null;
      const ticks = await api.history(symbol, { from: since, limit: 10000 });
      if (state.selected !== symbol || state.book !== book) return;
      book.addAll(ticks);
      drawChart();
    })
    .catch(err => console.warn("gap fill failed", err))
    .finally(() => {
      state.lastGapFill = Date.now();
      state.gapFill = null;
    });
}

// ---- live updates -----------------------------------------------------------------------

function onMessage(message) {
  if (message.type === "ticks") onTicks(message.ticks);
  else if (message.type === "signal") onSignal(toSignal(message.signal), message.message);
}

function onTicks(ticks) {
  const selectedWasKnown = state.selected !== null && table.has(state.selected);
  for (const raw of ticks) {
    const tick = liveTick(raw);
    table.upsert(raw.symbol, {
      close: tick.close,
      sma: tick.sma,
      ema: tick.ema,
      rsi: tick.rsi,
      ticks: tick.seq,
    });
    if (state.loading?.symbol === raw.symbol) state.loading.ticks.push(tick);
    else if (state.selected === raw.symbol) applyLiveTick(tick);
  }
  // An empty dashboard opens the first symbol that appears (not before the first load chose one).
  if (state.ready && !state.selected && ticks.length > 0) void selectSymbol(table.symbols().sort()[0]);
  else if (!selectedWasKnown && table.has(state.selected)) void loadLiveState(state.selected);
}

function applyLiveTick(tick) {
  const book = state.book;
  const previous = book.lastTime;
  const gap = book.lastSeq > 0 && tick.seq > book.lastSeq + 1;
  const bucket = book.add(tick);
  if (bucket !== null && chart) {
    chart.updateBucket(bucket);
    showChartMessage(null);
  }
  if (gap) scheduleGapFill(previous);
  if (Date.now() - state.reportLoadedAt > REPORT_AFTER_TICK_MS) void loadReport();
}

function onSignal(signal, message) {
  if (feed.add(signal, message)) desktop.notify(signal, message);
  showSignal(signal);
}

/** A signal in the table and, for the selected symbol, on the chart (the feed has it already). */
function showSignal(signal) {
  table.setSignal(signal);
  if (state.loading?.symbol === signal.symbol) state.loading.signals.push(signal);
  else if (state.selected === signal.symbol && !state.signals.some(s => s.seq === signal.seq)) {
    state.signals.push(signal);
    chart?.addSignal(signal);
    void loadReport();
  }
}

/**
 * Every reconnect first catches up on the signals stored while the page was away (shown as if they
 * had arrived live), then reloads what the REST API knows: the server may have restarted, lost or
 * gained data.
 */
function onOpen(opens, { lostAt }) {
  if (opens === 1) return;
  state.resyncing = true;
  void catchUp(lostAt)
    .catch(err => console.warn("catching up on the signals failed", err))
    .then(loadOverview)
    .catch(err => console.warn("reload after reconnect failed", err))
    .then(() => {
      state.resyncing = false;
      if (state.selected) return selectSymbol(state.selected);
    });
}

/**
 * The signals since the newest one the feed holds or the moment the connection was lost, whichever
 * is earlier (signals carry their tick's event time, which may run behind or ahead of this clock),
 * merged by identity: `from` is inclusive and the feed knows what it has. A flood of old news gets
 * one desktop notification, not one each.
 */
async function catchUp(lostAt) {
  const times = [feed.newestTime, lostAt === null ? null : lostAt / 1000].filter(t => t !== null);
  if (times.length === 0) return;
  const from = new Date(Math.min(...times) * 1000).toISOString();
  const signals = await retrying(() => api.signals({ from, limit: CATCH_UP_SIGNALS }));
  const missed = feed.merge(signals);
  for (const s of missed) showSignal(s);
  // A full answer may have left older ones out.
  desktop.notifyMissed(missed, { more: signals.length === CATCH_UP_SIGNALS });
}

function showConnection(status, detail) {
  const badge = $("connection");
  badge.dataset.state = status;
  setText(badge, { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" }[status]);
  badge.title =
    status === "live"
      ? "Receiving live updates over /ws"
      : detail.nextRetryAt
        ? `${status === "connecting" ? "Cannot reach /ws yet" : "Connection lost"}; attempt ${detail.attempt}, next try at ${fmt.clock(detail.nextRetryAt / 1000)}`
        : "Opening /ws";
  pollCluster();
}

// ---- overview and cluster ---------------------------------------------------------------

async function loadOverview() {
  const [rows, signals] = await retrying(() => Promise.all([api.symbols(), api.signals({ limit: 500 })]));
  const lastSignal = new Map();
  for (const s of signals) if (!lastSignal.has(s.symbol)) lastSignal.set(s.symbol, s);
  table.replaceAll(
    rows.map(r => ({
      symbol: r.symbol,
      close: num(r.close),
      sma: num(r.sma),
      ema: num(r.ema),
      rsi: num(r.rsi),
      ticks: num(r.tick_count),
      signal: lastSignal.get(r.symbol) ?? null,
    })),
  );
  feed.replaceAll(signals.slice(0, 100));
}

let clusterPoll = 0;
let clusterTimer = null;

/** Polls /api/cluster while the live connection is up (when it is down, so is the gateway's answer). */
function pollCluster() {
  const poll = ++clusterPoll;
  window.clearTimeout(clusterTimer);
  if (connection.state !== "live") {
    if (cluster.last) cluster.stale("Not refreshed while the live connection is down.");
    return;
  }
  // The selected symbol's live actor (its node, partition, progress) is refreshed on the same beat.
  if (state.selected && !state.loading && !state.resyncing)
    void loadLiveState(state.selected, { retry: false });
  api
    .notifications()
    .then(n => poll === clusterPoll && cluster.updateNotifications(n.subscribers))
    .catch(err => poll === clusterPoll && cluster.notificationsUnavailable(err.message));
  api
    .cluster()
    .then(c => poll === clusterPoll && cluster.update(c))
    .catch(err => poll === clusterPoll && cluster.stale(`Cluster view unavailable: ${err.message}`))
    .finally(() => {
      if (poll === clusterPoll)
        clusterTimer = setTimeout(pollCluster, document.hidden ? CLUSTER_POLL_HIDDEN_MS : CLUSTER_POLL_MS);
    });
}

// ---- start ------------------------------------------------------------------------------

async function loadChart() {
  try {
    const lib = await import("./vendor/lightweight-charts.mjs");
    chart = new PriceChart(lib, $("chart"), $("chart-legend"));
    chart.setThresholds(state.thresholds);
    if (state.selected && !state.loading) drawChart();
  } catch (err) {
    showChartMessage(`The chart library could not be loaded: ${err.message}`);
    console.warn(err);
  }
}

function wireControls() {
  const actions = {
    "zoom-in": () => chart?.zoom(0.7),
    "zoom-out": () => chart?.zoom(1 / 0.7),
    fit: () => chart?.fit(),
    latest: () => chart?.latest(),
  };
  for (const button of document.querySelectorAll(".chart-tools [data-action]"))
    button.addEventListener("click", () => actions[button.dataset.action]());
  document.addEventListener("keydown", event => {
    const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      $("search").focus();
    }
  });
  window.addEventListener("hashchange", () => {
    const symbol = symbolFromHash();
    if (symbol && symbol !== state.selected) void selectSymbol(symbol);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollCluster();
  });
}

/** Read-only figures for the browser tests (test/integration/dashboard). */
function exposeTestHook() {
  const snapshot = () => ({
    ready: state.ready,
    connection: connection.state,
    resyncing: state.resyncing,
    selected: state.selected,
    symbols: table.symbols().sort(),
    signals: feed.items.length,
    signalIds: feed.items.map(s => `${s.symbol}-${s.seq}`),
    notifications: desktop.describe(),
    thresholds: { ...state.thresholds },
    chart: chart ? chart.describe() : null,
    cluster: cluster.describe(),
    report: report.describe(),
    timeZone,
  });
  Object.defineProperty(window, "__dashboard", { value: Object.freeze({ snapshot }) });
}

async function start() {
  setText($("time-zone"), timeZone);
  wireControls();
  desktop.start();
  exposeTestHook();
  // The socket opens at once, whatever the REST calls below do: the badge reports the socket only.
  connection.start();
  const chartLoaded = loadChart();
  try {
    await loadOverview();
  } catch (err) {
    showChartMessage(`Could not load the symbols: ${err.message}`);
    console.warn(err);
  }
  const first = symbolFromHash() ?? table.symbols().sort()[0];
  if (first) await selectSymbol(first);
  else showChartMessage("No symbols yet: waiting for ticks.");
  await chartLoaded;
  window.setInterval(() => void loadReport(), REPORT_REFRESH_MS);
  state.ready = true;
}

void start();
