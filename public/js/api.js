// The REST API (README "API") and the shapes the dashboard works with. Postgres answers
// timestamps as ISO strings, the WebSocket as epoch seconds: both become epoch seconds here.

export class ApiError extends Error {
  constructor(path, status, message) {
    super(`${path}: ${status} ${message}`);
    this.status = status;
  }
}

async function getJson(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new ApiError(path, res.status, body.error ?? res.statusText);
  }
  return res.json();
}

function query(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.length > 0 ? `?${parts.join("&")}` : "";
}

/** Epoch seconds from epoch seconds or an ISO 8601 string; null when neither. */
export function toSeconds(value) {
  if (typeof value === "number") return value;
  if (typeof value === "string") {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? null : ms / 1000;
  }
  return null;
}

const num = v => (v === null || v === undefined ? null : Number(v));

/** A tick with its indicators, from a history row. */
function historyTick(row) {
  return {
    seq: row.seq,
    time: toSeconds(row.timestamp),
    open: row.opening_price,
    high: row.high,
    low: row.low,
    close: row.closing_price,
    volume: Number(row.volume),
    sma: num(row.moving_average),
    ema: num(row.exponential_moving_average),
    rsi: num(row.relative_strength_index),
  };
}

/** The same from a WebSocket `ticks` message item (domain TickResult). */
export function liveTick(t) {
  return {
    seq: t.seq,
    time: toSeconds(t.timestamp),
    open: t.open,
    high: t.high,
    low: t.low,
    close: t.close,
    volume: Number(t.volume),
    sma: num(t.sma),
    ema: num(t.ema),
    rsi: num(t.rsi),
  };
}

export function toSignal(s) {
  return {
    symbol: s.symbol,
    side: s.side,
    rsi: Number(s.rsi),
    price: Number(s.price),
    time: toSeconds(s.timestamp),
    seq: s.seq,
  };
}

export const api = {
  /** Every symbol with its latest figures and running aggregates. */
  symbols: () => getJson("api/symbols"),

  /** Ticks of one symbol, oldest first: the newest `limit` at or after `from` (epoch seconds). */
  history: async (symbol, { from, limit = 5000 } = {}) => {
    const body = await getJson(`api/symbols/${encodeURIComponent(symbol)}/history${query({ from, limit })}`);
    return body.ticks.map(historyTick).filter(t => t.time !== null);
  },

  /** Signals, newest first; `from` (ISO 8601 or epoch seconds) keeps those at or after it. */
  signals: async ({ symbol, from, limit = 100 } = {}) =>
    (await getJson(`api/signals${query({ symbol, from, limit })}`)).map(toSignal),

  /** The live actor of a symbol, from the node that owns it (its indicator settings included). */
  liveState: symbol => getJson(`api/symbols/${encodeURIComponent(symbol)}`),

  /** What the RSI rule would have done on the symbol's stored ticks, next to buy-and-hold; null when unknown. */
  report: async symbol => {
    try {
      return await getJson(`api/report/${encodeURIComponent(symbol)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  },

  cluster: () => getJson("api/cluster"),
  notifications: () => getJson("api/notifications"),
};
