// DOM and formatting helpers. Data only ever reaches the page as text (textContent, attribute
// values), never as HTML, so a symbol or a message cannot inject markup.

/**
 * Creates an element. `attrs`: `class`, `dataset`, `on<event>` listeners, anything else as an
 * attribute (`true` for a boolean attribute; null, undefined and false leave it out). Children
 * are nodes or strings (text nodes).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...texts(children));
  return node;
}

function texts(children) {
  return children
    .flat()
    .filter(c => c !== null && c !== undefined && c !== false)
    .map(c => (typeof c === "string" || typeof c === "number" ? String(c) : c));
}

/** Sets the text of `node` only when it changed (no layout work for the unchanged cells of a live table). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

const DASH = "–";
const price = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const shortClock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTime = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});

const isNumber = v => typeof v === "number" && Number.isFinite(v);

export const fmt = {
  price: v => (isNumber(v) ? price.format(v) : DASH),
  whole: v => (isNumber(v) ? whole.format(v) : DASH),
  rsi: v => (isNumber(v) ? oneDecimal.format(v) : DASH),
  /** Epoch seconds as the viewer's local time of day. */
  clock: seconds => (isNumber(seconds) ? clock.format(new Date(seconds * 1000)) : DASH),
  /** The same to the minute, where room is short. */
  shortClock: seconds => (isNumber(seconds) ? shortClock.format(new Date(seconds * 1000)) : DASH),
  /** Epoch seconds as the viewer's local date and time, for the chart's crosshair. */
  dateTime: seconds => (isNumber(seconds) ? dateTime.format(new Date(seconds * 1000)) : DASH),
};

/** The viewer's time zone, shown beside the chart: every time on the page is local. */
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** "oversold", "overbought" or "" for an RSI value under the configured thresholds. */
export function rsiZone(rsi, thresholds) {
  if (!isNumber(rsi)) return "";
  if (rsi < thresholds.oversold) return "oversold";
  if (rsi > thresholds.overbought) return "overbought";
  return "";
}
