// The live signals feed (newest first) and a short-lived toast for each new signal.

import { el, fmt } from "./dom.js";

const MAX_ITEMS = 100;
const MAX_TOASTS = 3;
const TOAST_MS = 6000;

/** "BUY TSLA": what a toast or a desktop notification leads with. */
export const signalTitle = signal => `${signal.side.toUpperCase()} ${signal.symbol}`;

/** "at 236.86: RSI 23.5 entered the oversold zone": the rest of the server's line, in the viewer's number format. */
export function signalDetail(signal) {
  const zone = signal.side === "buy" ? "oversold" : "overbought";
  return `at ${fmt.price(signal.price)}: RSI ${fmt.rsi(signal.rsi)} entered the ${zone} zone`;
}

/** A signal's identity: its symbol's tick that emitted it. */
const keyOf = signal => `${signal.symbol}/${signal.seq}`;

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

  /** Adds a live signal; a toast tells about it unless it was known already. Whether it was new. */
  add(signal, message) {
    if (!this.remember(signal)) return false;
    this.render();
    this.toast(signal, message);
    return true;
  }

  /**
   * Adds signals that arrived while the page was disconnected, as `add` would have, but renders
   * once and toasts only the newest few (older toasts would be pushed out at once). Returns
   * the ones that were new, oldest first.
   */
  merge(signals) {
    const fresh = [...signals].sort((a, b) => a.time - b.time).filter(s => this.remember(s));
    if (fresh.length === 0) return fresh;
    this.render();
    for (const s of fresh.slice(-MAX_TOASTS)) this.toast(s, null);
    return fresh;
  }

  /** The event time of the newest signal held (epoch seconds), or null. */
  get newestTime() {
    return this.items[0]?.time ?? null;
  }

  remember(signal) {
    const key = keyOf(signal);
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
    const toast = el(
      "div",
      { class: `toast ${signal.side}`, title: message ?? "" },
      el("span", {}, el("strong", {}, signalTitle(signal)), ` ${signalDetail(signal)}`),
      el("button", { type: "button", class: "close", "aria-label": "Dismiss", onclick: close }, "×"),
    );
    this.toasts.prepend(toast);
    while (this.toasts.children.length > MAX_TOASTS) this.toasts.lastElementChild.remove();
    setTimeout(close, TOAST_MS);
  }
}
