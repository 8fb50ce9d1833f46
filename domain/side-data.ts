import type { SymbolSideData } from "./messages";
import { requireFinite } from "./compensated-sum";

export interface OrderBookEntry {
  price: number;
  quantity: number;
  timestamp: number;
}

export interface SentimentReading {
  score: number;
  magnitude: number;
  timestamp: number;
}

export interface MarketDataReading {
  marketCap: number;
  peRatio: number;
  timestamp: number;
}

/**
 * The latest side data of one symbol: the last order-book entry on each side, the last news sentiment and the
 * last market data, `null` until one arrives. "Latest" means last applied (partition order), like every other
 * per-symbol figure, so replays agree; a message with an older event time still replaces a newer one.
 *
 * Plain JSON-ready data. `applySideData` returns a new value instead of mutating, so a state handed out earlier
 * never changes under its holder.
 */
export interface SideDataState {
  orderBook: { buy: OrderBookEntry | null; sell: OrderBookEntry | null };
  newsSentiment: SentimentReading | null;
  marketData: MarketDataReading | null;
}

export function emptySideData(): SideDataState {
  return { orderBook: { buy: null, sell: null }, newsSentiment: null, marketData: null };
}

/**
 * The state after one side-data message. Numbers that may legally be zero get `+ 0`: JSON writes -0 as 0, and a
 * -0 kept in memory would make a restored actor differ, in the sign of a zero, from one that never stopped.
 */
export function applySideData(state: SideDataState, message: SymbolSideData): SideDataState {
  switch (message.data_type) {
    case "order_book": {
      const entry = { price: message.price, quantity: message.quantity, timestamp: message.timestamp };
      const orderBook =
        message.order_type === "buy"
          ? { buy: entry, sell: state.orderBook.sell }
          : { buy: state.orderBook.buy, sell: entry };
      return { ...state, orderBook };
    }
    case "news_sentiment":
      return {
        ...state,
        newsSentiment: {
          score: message.sentiment_score + 0,
          magnitude: message.sentiment_magnitude + 0,
          timestamp: message.timestamp,
        },
      };
    case "market_data":
      return {
        ...state,
        marketData: {
          marketCap: message.market_cap,
          peRatio: message.pe_ratio + 0,
          timestamp: message.timestamp,
        },
      };
  }
}

/** A deep copy that checks every number, for state that crossed a process boundary (a snapshot). */
export function copySideData(state: SideDataState): SideDataState {
  const entry = (e: OrderBookEntry | null, side: string): OrderBookEntry | null =>
    e === null
      ? null
      : {
          price: requireFinite(e.price, `${side} order price`),
          quantity: requireFinite(e.quantity, `${side} order quantity`),
          timestamp: requireFinite(e.timestamp, `${side} order timestamp`),
        };
  const s = state.newsSentiment;
  const m = state.marketData;
  return {
    orderBook: { buy: entry(state.orderBook.buy, "buy"), sell: entry(state.orderBook.sell, "sell") },
    newsSentiment:
      s === null
        ? null
        : {
            score: requireFinite(s.score, "sentiment score"),
            magnitude: requireFinite(s.magnitude, "sentiment magnitude"),
            timestamp: requireFinite(s.timestamp, "sentiment timestamp"),
          },
    marketData:
      m === null
        ? null
        : {
            marketCap: requireFinite(m.marketCap, "market cap"),
            peRatio: requireFinite(m.peRatio, "pe ratio"),
            timestamp: requireFinite(m.timestamp, "market data timestamp"),
          },
  };
}
