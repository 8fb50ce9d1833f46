// The symbols table: live figures per symbol, sortable by any column, filtered by the search
// box, RSI coloured by zone, with each symbol's last signal. Rows are kept per symbol and updated
// in place, so a live update never steals the keyboard focus or the scroll position.

import { el, fmt, rsiZone, setText } from "./dom.js";

const COLUMNS = [
  { key: "symbol", label: "Symbol", text: r => r.symbol, sort: r => r.symbol },
  { key: "close", label: "Last", numeric: true, text: r => fmt.price(r.close) },
  { key: "sma", label: "SMA", numeric: true, wide: true, text: r => fmt.price(r.sma) },
  { key: "ema", label: "EMA", numeric: true, wide: true, text: r => fmt.price(r.ema) },
  { key: "rsi", label: "RSI", numeric: true, text: r => fmt.rsi(r.rsi) },
  { key: "ticks", label: "Ticks", numeric: true, medium: true, text: r => fmt.whole(r.ticks) },
  {
    key: "signal",
    label: "Last signal",
    text: r => (r.signal ? `${r.signal.side.toUpperCase()} ${fmt.shortClock(r.signal.time)}` : "–"),
    sort: r => r.signal?.time ?? null,
  },
];

export class SymbolsTable {
  /**
   * @param {object} parts
   * @param {HTMLTableElement} parts.table
   * @param {HTMLInputElement} parts.search
   * @param {HTMLElement} parts.count "n of m symbols" line
   * @param {(symbol: string) => void} parts.onSelect
   */
  constructor({ table, search, count, onSelect }) {
    this.body = table.tBodies[0];
    this.count = count;
    this.onSelect = onSelect;
    this.rows = new Map();
    this.views = new Map();
    this.selected = null;
    this.filter = "";
    this.sortKey = "symbol";
    this.sortAsc = true;
    this.thresholds = { oversold: 30, overbought: 70 };
    this.renderTimer = null;
    this.empty = el("tr", { class: "empty" }, el("td", { colspan: COLUMNS.length }));

    this.headers = COLUMNS.map(col => {
      const th = el(
        "th",
        { scope: "col", class: columnClass(col), dataset: { key: col.key } },
        el("button", { type: "button", class: "sort", onclick: () => this.sortBy(col.key) }, col.label),
      );
      return th;
    });
    table.tHead.replaceChildren(el("tr", {}, this.headers));
    search.addEventListener("input", () => {
      this.filter = search.value.trim().toUpperCase();
      this.render();
    });
    this.render();
  }

  /** Replaces every row (first load, and after a reconnect: the server may have lost symbols). */
  replaceAll(rows) {
    const next = new Map();
    for (const r of rows) next.set(r.symbol, { ...this.rows.get(r.symbol), ...r });
    for (const symbol of this.rows.keys()) if (!next.has(symbol)) this.views.get(symbol)?.tr.remove();
    for (const symbol of [...this.views.keys()]) if (!next.has(symbol)) this.views.delete(symbol);
    this.rows = next;
    this.scheduleRender();
  }

  /** Merges fields into a symbol's row, creating it when new. */
  upsert(symbol, fields) {
    this.rows.set(symbol, { ...(this.rows.get(symbol) ?? { symbol }), ...fields });
    this.scheduleRender();
  }

  setSignal(signal) {
    const row = this.rows.get(signal.symbol);
    if (row?.signal && row.signal.time > signal.time) return;
    this.upsert(signal.symbol, { signal });
  }

  setThresholds(thresholds) {
    this.thresholds = thresholds;
    this.scheduleRender();
  }

  select(symbol) {
    this.selected = symbol;
    this.render();
  }

  symbols() {
    return [...this.rows.keys()];
  }

  has(symbol) {
    return this.rows.has(symbol);
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortAsc = !this.sortAsc;
    else {
      this.sortKey = key;
      this.sortAsc = key === "symbol";
    }
    this.render();
  }

  /** Live ticks come in bursts every 250 ms: one render per burst. */
  scheduleRender() {
    if (this.renderTimer !== null) return;
    this.renderTimer = setTimeout(() => this.render(), 30);
  }

  render() {
    window.clearTimeout(this.renderTimer);
    this.renderTimer = null;
    const visible = this.sorted().filter(r => r.symbol.includes(this.filter));
    const focused = document.activeElement?.closest?.("tr[data-symbol]")?.dataset.symbol ?? null;

    visible.forEach((row, i) => {
      const view = this.view(row.symbol);
      this.fill(view, row);
      if (this.body.children[i] !== view.tr) this.body.insertBefore(view.tr, this.body.children[i] ?? null);
    });
    while (this.body.children.length > visible.length) this.body.lastElementChild.remove();
    if (visible.length === 0) {
      this.empty.firstChild.textContent =
        this.rows.size === 0 ? "No symbols yet: waiting for ticks." : "No symbol matches the filter.";
      this.body.append(this.empty);
    }
    // Moving a focused row out and back into the table blurs it: give the focus back.
    if (focused && document.activeElement === document.body) this.views.get(focused)?.tr.focus();

    for (const th of this.headers) {
      const key = th.dataset.key;
      if (key === this.sortKey) th.setAttribute("aria-sort", this.sortAsc ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    setText(this.count, `${visible.length} of ${this.rows.size} symbols`);
  }

  sorted() {
    const col = COLUMNS.find(c => c.key === this.sortKey);
    const value = col.sort ?? (r => r[col.key]);
    const dir = this.sortAsc ? 1 : -1;
    return [...this.rows.values()].sort((a, b) => {
      const x = value(a);
      const y = value(b);
      // Rows without a value sort last either way.
      if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
      if (y === null || y === undefined) return -1;
      const order = typeof x === "string" ? x.localeCompare(y) : x - y;
      return order * dir || a.symbol.localeCompare(b.symbol);
    });
  }

  view(symbol) {
    let view = this.views.get(symbol);
    if (view) return view;
    const cells = COLUMNS.map(col => el(col.key === "symbol" ? "th" : "td", { class: columnClass(col) }));
    cells[0].setAttribute("scope", "row");
    const tr = el(
      "tr",
      {
        tabindex: 0,
        dataset: { symbol },
        onclick: () => this.onSelect(symbol),
        onkeydown: event => this.onRowKey(event, tr, symbol),
      },
      cells,
    );
    view = { tr, cells };
    this.views.set(symbol, view);
    return view;
  }

  fill(view, row) {
    COLUMNS.forEach((col, i) => setText(view.cells[i], col.text(row)));
    const rsiCell = view.cells[COLUMNS.findIndex(c => c.key === "rsi")];
    const zone = rsiZone(row.rsi, this.thresholds);
    rsiCell.className = `num rsi ${zone}`;
    if (zone) rsiCell.title = zone;
    else rsiCell.removeAttribute("title");
    const signalCell = view.cells[COLUMNS.findIndex(c => c.key === "signal")];
    signalCell.className = `signal ${row.signal?.side ?? ""}`;
    signalCell.title = row.signal
      ? `${row.signal.side} at ${fmt.price(row.signal.price)}, RSI ${fmt.rsi(row.signal.rsi)}, ${fmt.dateTime(row.signal.time)}`
      : "";
    if (row.symbol === this.selected) view.tr.setAttribute("aria-current", "true");
    else view.tr.removeAttribute("aria-current");
  }

  onRowKey(event, tr, symbol) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.onSelect(symbol);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next?.dataset.symbol) next.focus();
    }
  }
}

function columnClass(col) {
  return [col.numeric ? "num" : "", col.wide ? "col-wide" : "", col.medium ? "col-medium" : ""]
    .filter(Boolean)
    .join(" ");
}
