// The selected symbol's report (GET /api/report/:symbol): what the RSI rule would have done on
// its stored ticks (long only: buy on a buy signal, sell on a sell signal), beside buy-and-hold.

import { el, fmt } from "./dom.js";

const percent = new Intl.NumberFormat(undefined, {
  style: "percent",
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
  signDisplay: "exceptZero",
});
const pct = v => (typeof v === "number" && Number.isFinite(v) ? percent.format(v / 100) : "–");

export class ReportView {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.report = null;
    this.render();
  }

  /** Shows `report` (null: nothing known yet for the symbol). */
  show(report) {
    this.report = report;
    this.render();
  }

  render() {
    const r = this.report;
    if (!r) {
      this.root.replaceChildren("RSI rule vs buy-and-hold: no report yet.");
      return;
    }
    const trades = `${fmt.whole(r.strategy.trades)} trade${r.strategy.trades === 1 ? "" : "s"}${r.strategy.open ? ", 1 open" : ""}`;
    this.root.replaceChildren(
      "RSI rule ",
      el("strong", { class: "report-strategy" }, pct(r.strategy.returnPct)),
      ` (${trades}) vs buy-and-hold `,
      el("strong", { class: "report-hold" }, pct(r.buyAndHold.returnPct)),
      ` · ${fmt.whole(r.signals)} signals (${fmt.whole(r.buySignals)} buy, ${fmt.whole(r.sellSignals)} sell) over `,
      el("span", { class: "report-ticks" }, fmt.whole(r.ticks)),
      " ticks",
    );
    this.root.title = this.root.textContent;
  }

  describe() {
    return this.report ? { ...this.report } : null;
  }
}
