"use strict";
// The live dashboard: symbols from /api/symbols, history from /api/symbols/:symbol/history,
// updates over the /ws WebSocket (coalesced ticks and signal notifications).

const state = { symbols: new Map(), selected: null, history: [], ws: null };
const $ = sel => document.querySelector(sel);
const fmt = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

async function getJson(path) {
  const res = await fetch(path);
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function rsiClass(rsi) {
  if (rsi === null || rsi === undefined) return "";
  if (rsi < 30) return "oversold";
  if (rsi > 70) return "overbought";
  return "";
}

function renderTable() {
  const body = $("#symbols tbody");
  const rows = [...state.symbols.values()].sort((a, b) => a.symbol.localeCompare(b.symbol));
  body.replaceChildren(
    ...rows.map(s => {
      const tr = document.createElement("tr");
      if (s.symbol === state.selected) tr.className = "selected";
      const cells = [
        s.symbol,
        fmt(s.close),
        fmt(s.sma),
        fmt(s.ema),
        fmt(s.rsi, 1),
        s.tick_count ?? "–",
        fmt(s.average_volume, 0),
        `${fmt(s.lowest_price)} / ${fmt(s.highest_price)}`,
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 4) td.className = rsiClass(s.rsi);
        tr.appendChild(td);
      });
      tr.addEventListener("click", () => select(s.symbol));
      return tr;
    }),
  );
}

function drawLines(canvas, series, options) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const values = series.flatMap(s => s.points.filter(v => v !== null));
  if (values.length === 0) return;
  let min = options.min ?? Math.min(...values);
  let max = options.max ?? Math.max(...values);
  if (max === min) max = min + 1;
  const n = Math.max(...series.map(s => s.points.length));
  const x = i => (n <= 1 ? width / 2 : (i / (n - 1)) * (width - 20) + 10);
  const y = v => height - 10 - ((v - min) / (max - min)) * (height - 20);
  for (const level of options.levels ?? []) {
    ctx.strokeStyle = "#3a4560";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(0, y(level));
    ctx.lineTo(width, y(level));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let started = false;
    s.points.forEach((v, i) => {
      if (v === null) return;
      if (started) ctx.lineTo(x(i), y(v));
      else ctx.moveTo(x(i), y(v));
      started = true;
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#8691a8";
  ctx.fillText(fmt(max), 4, 12);
  ctx.fillText(fmt(min), 4, height - 2);
}

function renderChart() {
  const css = getComputedStyle(document.documentElement);
  const color = name => css.getPropertyValue(name).trim();
  const h = state.history;
  drawLines(
    $("#price"),
    [
      { color: color("--price"), points: h.map(t => t.close) },
      { color: color("--sma"), points: h.map(t => t.sma) },
      { color: color("--ema"), points: h.map(t => t.ema) },
    ],
    {},
  );
  drawLines($("#rsi"), [{ color: color("--sma"), points: h.map(t => t.rsi) }], {
    min: 0,
    max: 100,
    levels: [30, 70],
  });
}

async function select(symbol) {
  state.selected = symbol;
  $("#chart-title").textContent = `${symbol}: price (blue), SMA (yellow), EMA (purple)`;
  renderTable();
  const history = await getJson(`api/symbols/${encodeURIComponent(symbol)}/history?limit=300`);
  state.history = history.ticks.map(t => ({
    seq: t.seq,
    close: t.closing_price,
    sma: t.moving_average,
    ema: t.exponential_moving_average,
    rsi: t.relative_strength_index,
  }));
  renderChart();
  try {
    const live = await getJson(`api/symbols/${encodeURIComponent(symbol)}`);
    $("#live-state").textContent =
      `live actor on node ${live.nodeID}, partition ${live.partition}, ${live.state.seq} ticks, last offset ${live.state.lastOffset}`;
  } catch (err) {
    $("#live-state").textContent = `live state unavailable: ${err.message}`;
  }
}

function onTicks(ticks) {
  for (const t of ticks) {
    const row = state.symbols.get(t.symbol) ?? { symbol: t.symbol };
    Object.assign(row, { close: t.close, sma: t.sma, ema: t.ema, rsi: t.rsi, tick_count: t.seq });
    state.symbols.set(t.symbol, row);
    if (t.symbol === state.selected && (state.history.length === 0 || state.history.at(-1).seq < t.seq)) {
      state.history.push({ seq: t.seq, close: t.close, sma: t.sma, ema: t.ema, rsi: t.rsi });
      if (state.history.length > 300) state.history.shift();
      renderChart();
    }
  }
  renderTable();
}

function addSignal(signal, message) {
  const li = document.createElement("li");
  li.className = signal.side;
  li.textContent =
    message ??
    `${signal.side.toUpperCase()} ${signal.symbol} at ${fmt(signal.price)} (RSI ${fmt(signal.rsi, 1)})`;
  const list = $("#signals");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  state.ws = ws;
  ws.onopen = () => {
    $("#status").textContent = "live";
    $("#status").className = "status online";
  };
  ws.onclose = () => {
    $("#status").textContent = "reconnecting…";
    $("#status").className = "status offline";
    setTimeout(connect, 2000);
  };
  ws.onmessage = event => {
    const msg = JSON.parse(event.data);
    if (msg.type === "ticks") onTicks(msg.ticks);
    else if (msg.type === "signal") addSignal(msg.signal, msg.message);
  };
}

async function refreshCluster() {
  try {
    const c = await getJson("api/cluster");
    const actors = c.actors
      .map(a => `${a.nodeID}: ${a.partitions.length} partitions, ${a.actors} actors`)
      .join(" · ");
    $("#cluster").textContent = `${c.nodes.length} node(s) · ${actors}`;
  } catch {
    $("#cluster").textContent = "";
  }
}

async function start() {
  for (const s of await getJson("api/symbols")) state.symbols.set(s.symbol, s);
  renderTable();
  const signals = await getJson("api/signals?limit=20");
  for (const s of signals.reverse()) addSignal({ ...s, timestamp: s.timestamp });
  if (state.symbols.size > 0) await select([...state.symbols.keys()].sort()[0]);
  connect();
  refreshCluster();
  setInterval(refreshCluster, 5000);
}

start().catch(err => {
  $("#status").textContent = `error: ${err.message}`;
});
