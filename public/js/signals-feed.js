// The live signals feed (newest first) and a short-lived toast for each new signal.

import { el, fmt } from "./dom.js";

const MAX_ITEMS = 100;
const MAX_TOASTS = 3;
const TOAST_MS = 6000;

export class SignalsFeed {
  /**
   * @param {object} parts
   * @param {HTMLOListElement} parts.list
   * @param {HTMLElement} parts.toasts a polite live region
   * @param {(symbol: string) => void} parts.onSelect
   */
  constructor({ list, toasts, onSelect }) {
    this.list = list;
    this.toasts = toasts;
    this.onSelect = onSelect;
    this.keys = new Set();
    this.items = [];
    this.render();
  }

  /** Replaces the feed with `signals` (newest first), e.g. after a reconnect. */
  replaceAll(signals) {
    this.keys = new Set();
    this.items = [];
    for (const s of [...signals].reverse()) this.remember(s);
    this.render();
  }

  /** Adds a live signal; a toast tells about it unless it was known already. */
  add(signal, message) {
    if (!this.remember(signal)) return;
    this.render();
    this.toast(signal, message);
  }

  remember(signal) {
    const key = `${signal.symbol}/${signal.seq}`;
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    this.items.unshift(signal);
    this.items.sort((a, b) => b.time - a.time);
    if (this.items.length > MAX_ITEMS) this.items.length = MAX_ITEMS;
    return true;
  }

  render() {
    if (this.items.length === 0) {
      this.list.replaceChildren(el("li", { class: "empty" }, "No signals yet."));
      return;
    }
    this.list.replaceChildren(
      ...this.items.map(s =>
        el(
          "li",
          { class: `signal-item ${s.side}` },
          el("span", { class: `side ${s.side}` }, s.side.toUpperCase()),
          el(
            "button",
            {
              type: "button",
              class: "link",
              onclick: () => this.onSelect(s.symbol),
              "aria-label": `Show the chart of ${s.symbol}`,
            },
            s.symbol,
          ),
          el("span", { class: "num" }, fmt.price(s.price)),
          el("span", { class: "muted" }, `RSI ${fmt.rsi(s.rsi)}`),
          el("time", { class: "muted", datetime: new Date(s.time * 1000).toISOString() }, fmt.clock(s.time)),
        ),
      ),
    );
  }

  toast(signal, message) {
    const close = () => toast.remove();
    const zone = signal.side === "buy" ? "oversold" : "overbought";
    const toast = el(
      "div",
      { class: `toast ${signal.side}`, title: message ?? "" },
      el(
        "span",
        {},
        el("strong", {}, `${signal.side.toUpperCase()} ${signal.symbol}`),
        ` at ${fmt.price(signal.price)}: RSI ${fmt.rsi(signal.rsi)} entered the ${zone} zone`,
      ),
      el("button", { type: "button", class: "close", "aria-label": "Dismiss", onclick: close }, "×"),
    );
    this.toasts.prepend(toast);
    while (this.toasts.children.length > MAX_TOASTS) this.toasts.lastElementChild.remove();
    setTimeout(close, TOAST_MS);
  }
}
