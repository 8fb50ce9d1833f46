// The chart of one symbol on TradingView's lightweight-charts: per-minute candles and volume,
// SMA and EMA over the candles, an RSI pane with its thresholds, and a marker at every signal.
// Times are UTC epoch seconds in the data and the viewer's local time on screen.

import { el, fmt } from "./dom.js";

const css = name => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** Number of candles shown when a symbol is opened; the rest is a scroll away. */
const INITIAL_BARS = 150;
const SCROLL_BARS = 10;

export class PriceChart {
  /**
   * @param {object} lib the lightweight-charts module
   * @param {HTMLElement} container gets the chart canvas; focusable, so the keys below work
   * @param {HTMLElement} legend shows the values under the crosshair (the newest when it is away)
   */
  constructor(lib, container, legend) {
    this.lib = lib;
    const { createChart, CandlestickSeries, HistogramSeries, LineSeries, LineStyle, CrosshairMode } = lib;
    const colors = {
      text: css("--muted"),
      grid: css("--grid"),
      border: css("--border"),
      up: css("--buy"),
      down: css("--sell"),
      sma: css("--sma"),
      ema: css("--ema"),
      rsi: css("--rsi"),
    };
    this.colors = colors;
    this.symbol = null;
    this.book = null;
    this.signals = [];

    this.legend = legend;

    const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
    const day = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
    const month = new Intl.DateTimeFormat(undefined, { month: "short" });
    const { TickMarkType } = lib;
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { color: css("--chart-bg") },
        textColor: colors.text,
        fontFamily: getComputedStyle(document.body).fontFamily,
        panes: { separatorColor: colors.border },
      },
      grid: { vertLines: { color: colors.grid }, horzLines: { color: colors.grid } },
      crosshair: { mode: CrosshairMode.Normal },
      rightPriceScale: { borderColor: colors.border },
      timeScale: {
        borderColor: colors.border,
        timeVisible: true,
        secondsVisible: false,
        rightOffset: 3,
        tickMarkFormatter: (t, type) => {
          const d = new Date(t * 1000);
          if (type === TickMarkType.Year) return String(d.getFullYear());
          if (type === TickMarkType.Month) return month.format(d);
          if (type === TickMarkType.DayOfMonth) return day.format(d);
          return time.format(d);
        },
      },
      localization: { timeFormatter: t => fmt.dateTime(t) },
    });

    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: colors.up,
      downColor: colors.down,
      borderVisible: false,
      wickUpColor: colors.up,
      wickDownColor: colors.down,
    });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceScaleId: "volume",
      priceFormat: { type: "volume" },
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    const overlay = color => ({
      color,
      lineWidth: 2,
      priceLineVisible: false,
      lastValueVisible: false,
      crosshairMarkerVisible: false,
    });
    this.sma = this.chart.addSeries(LineSeries, overlay(colors.sma));
    this.ema = this.chart.addSeries(LineSeries, overlay(colors.ema));

    this.rsi = this.chart.addSeries(
      LineSeries,
      {
        color: colors.rsi,
        lineWidth: 2,
        priceLineVisible: false,
        autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 100 } }),
      },
      1,
    );
    this.chart.panes()[0].setStretchFactor(3);
    this.chart.panes()[1].setStretchFactor(1);
    const band = (price, title, color) =>
      this.rsi.createPriceLine({ price, title, color, lineWidth: 1, lineStyle: LineStyle.Dashed });
    this.bands = {
      oversold: band(30, "oversold 30", colors.up),
      overbought: band(70, "overbought 70", colors.down),
    };
    this.markers = lib.createSeriesMarkers(this.candles, []);

    this.chart.subscribeCrosshairMove(param => this.showLegend(param.time ?? null));
    container.addEventListener("keydown", event => this.onKey(event));
    // Until the user moves the view, it follows the data: all of a short history, the newest of a long one.
    this.autoFit = true;
    for (const type of ["wheel", "pointerdown", "touchstart"])
      container.addEventListener(type, () => (this.autoFit = false), { passive: true });
    // autoSize keeps the bar spacing when the container resizes (a scrollbar comes or goes, the
    // window or the layout changes): a view that follows the data is fitted again, after the
    // chart has taken its new size.
    new window.ResizeObserver(() =>
      window.requestAnimationFrame(() => {
        if (this.autoFit && this.candles.data().length > 0) this.resetView();
      }),
    ).observe(container);
  }

  setThresholds({ oversold, overbought }) {
    this.bands.oversold.applyOptions({ price: oversold, title: `oversold ${oversold}` });
    this.bands.overbought.applyOptions({ price: overbought, title: `overbought ${overbought}` });
  }

  /** Draws a symbol's whole book and signals (on load, switch and resync). */
  show(symbol, book, signals) {
    const switched = symbol !== this.symbol;
    this.symbol = symbol;
    this.book = book;
    this.signals = signals;
    const buckets = book.list();
    this.candles.setData(buckets.map(candle));
    this.volume.setData(buckets.map(b => this.volumeBar(b)));
    this.sma.setData(buckets.map(b => line(b, "sma")));
    this.ema.setData(buckets.map(b => line(b, "ema")));
    this.rsi.setData(buckets.map(b => line(b, "rsi")));
    this.drawMarkers();
    if (switched) this.autoFit = true;
    if (this.autoFit) this.resetView();
    this.showLegend(null);
  }

  /** Redraws one bucket after a live tick: the newest one in place, an older one by a full redraw. */
  updateBucket(time) {
    const last = this.candles.data().at(-1);
    if (last && time < last.time) {
      this.show(this.symbol, this.book, this.signals);
      return;
    }
    const b = this.book.get(time);
    const isNew = !last || time > last.time;
    this.candles.update(candle(b));
    this.volume.update(this.volumeBar(b));
    this.sma.update(line(b, "sma"));
    this.ema.update(line(b, "ema"));
    this.rsi.update(line(b, "rsi"));
    // A signal can arrive before its tick's candle exists; its marker needs the candle.
    if (isNew) this.drawMarkers();
    if (isNew && this.autoFit) this.resetView();
    this.showLegend(null);
  }

  addSignal(signal) {
    this.signals = [...this.signals, signal];
    this.drawMarkers();
  }

  /** One marker per minute and side: a volatile minute can hold several signals of each. */
  drawMarkers() {
    const first = this.candles.data()[0]?.time;
    const groups = new Map();
    for (const s of this.signals) {
      const time = Math.floor(s.time / 60) * 60;
      if (first === undefined || time < first) continue;
      const key = `${time}/${s.side}`;
      const group = groups.get(key) ?? { time, side: s.side, count: 0, last: s };
      group.count += 1;
      if (s.seq >= group.last.seq) group.last = s;
      groups.set(key, group);
    }
    const markers = [...groups.values()]
      .sort((a, b) => a.time - b.time || a.side.localeCompare(b.side))
      .map(g => ({
        time: g.time,
        id: `${g.time}/${g.side}`,
        position: g.side === "buy" ? "belowBar" : "aboveBar",
        shape: g.side === "buy" ? "arrowUp" : "arrowDown",
        color: g.side === "buy" ? this.colors.up : this.colors.down,
        text:
          g.count > 1
            ? `${g.side.toUpperCase()} ×${g.count}`
            : `${g.side.toUpperCase()} ${fmt.rsi(g.last.rsi)}`,
      }));
    this.markers.setMarkers(markers);
  }

  volumeBar(b) {
    const color = b.close >= b.open ? this.colors.up : this.colors.down;
    return { time: b.time, value: b.volume, color: `${color}66` };
  }

  resetView() {
    const n = this.candles.data().length;
    if (n <= INITIAL_BARS) this.chart.timeScale().fitContent();
    else this.chart.timeScale().setVisibleLogicalRange({ from: n - INITIAL_BARS, to: n + 3 });
  }

  zoom(factor) {
    this.autoFit = false;
    const ts = this.chart.timeScale();
    const range = ts.getVisibleLogicalRange();
    if (!range) return;
    const centre = (range.from + range.to) / 2;
    const half = Math.max(5, ((range.to - range.from) / 2) * factor);
    ts.setVisibleLogicalRange({ from: centre - half, to: centre + half });
  }

  scroll(bars) {
    this.autoFit = false;
    const ts = this.chart.timeScale();
    ts.scrollToPosition(ts.scrollPosition() + bars, false);
  }

  fit() {
    this.autoFit = true;
    this.chart.timeScale().fitContent();
  }

  latest() {
    this.chart.timeScale().scrollToRealTime();
  }

  onKey(event) {
    const actions = {
      ArrowLeft: () => this.scroll(-SCROLL_BARS),
      ArrowRight: () => this.scroll(SCROLL_BARS),
      "+": () => this.zoom(0.7),
      "=": () => this.zoom(0.7),
      "-": () => this.zoom(1 / 0.7),
      Home: () => this.fit(),
      End: () => this.latest(),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }

  /** The values under the crosshair, or the newest candle's when the crosshair is away. */
  showLegend(time) {
    const b = this.book ? (time === null ? this.book.list().at(-1) : this.book.get(time)) : null;
    const item = (label, value, cls) =>
      el("span", { class: `legend-item ${cls ?? ""}` }, el("span", { class: "legend-label" }, label), value);
    if (!b) {
      this.legend.replaceChildren(el("span", { class: "legend-symbol" }, this.symbol ?? ""), " no data yet");
      return;
    }
    this.legend.replaceChildren(
      el("span", { class: "legend-symbol" }, this.symbol ?? ""),
      el("span", { class: "legend-time" }, fmt.dateTime(b.time)),
      item("O", fmt.price(b.open)),
      item("H", fmt.price(b.high)),
      item("L", fmt.price(b.low)),
      item("C", fmt.price(b.close), b.close >= b.open ? "up" : "down"),
      item("Vol", fmt.whole(b.volume)),
      item("SMA", fmt.price(b.sma), "sma"),
      item("EMA", fmt.price(b.ema), "ema"),
      item("RSI", fmt.rsi(b.rsi), "rsi"),
    );
  }

  /** Read-only figures for the browser tests (window.__dashboard). */
  describe() {
    const last = this.candles.data().at(-1) ?? null;
    const range = this.chart.timeScale().getVisibleLogicalRange();
    return {
      visibleBars: range ? Math.round((range.to - range.from) * 10) / 10 : null,
      symbol: this.symbol,
      candles: this.candles.data().length,
      volume: this.volume.data().length,
      sma: this.sma.data().filter(p => p.value !== undefined).length,
      ema: this.ema.data().filter(p => p.value !== undefined).length,
      rsi: this.rsi.data().filter(p => p.value !== undefined).length,
      markers: this.markers.markers().map(m => ({ time: m.time, position: m.position, text: m.text })),
      lastCandle: last && {
        time: last.time,
        open: last.open,
        high: last.high,
        low: last.low,
        close: last.close,
      },
      bands: [this.bands.oversold.options().price, this.bands.overbought.options().price],
    };
  }
}

const candle = b => ({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });

/** A line point, or whitespace (a gap) while the indicator has too few ticks to be defined. */
const line = (b, key) => (b[key] === null ? { time: b.time } : { time: b.time, value: b[key] });
