import type { PriceTick } from "../domain/messages";

/**
 * Daily price bars as Yahoo Finance and Stooq export them:
 *
 *   Yahoo:  Date,Open,High,Low,Close,Adj Close,Volume
 *   Stooq:  Date,Open,High,Low,Close,Volume
 *
 * Header names are matched ignoring case, spaces, `_` and `-` (so `Adj Close`, `adjclose` and
 * `adj_close` are one column) and may come in any order; other columns are ignored. Volume is
 * optional (Stooq omits it for some indices; it is then 0). A row is replayed at
 * {@link DAILY_TIME_UTC} UTC of its date, or at its own time if the Date cell carries one.
 */

/** 21:00 UTC: at or after the New York close all year (16:00 EST = 21:00 UTC, 16:00 EDT = 20:00 UTC), on the bar's own UTC date. */
export const DAILY_TIME_UTC = "21:00";
const DAILY_SECONDS = 21 * 3600;

export interface DailyBar {
  /** 1-based line of the file the row was on (the header is line 1). */
  line: number;
  /** The Date cell as written. */
  date: string;
  /** Epoch seconds. */
  timestamp: number;
  open: number;
  high: number;
  low: number;
  close: number;
  /** Adj Close when the file has that column. */
  adjClose: number | null;
  volume: number;
}

export interface UnreadableRow {
  line: number;
  reason: string;
}

export interface ParsedCsv {
  bars: DailyBar[];
  unreadable: UnreadableRow[];
  /** Lines holding something other than whitespace, header excluded. */
  dataLines: number;
  hasAdjClose: boolean;
  hasVolume: boolean;
  /** The file listed its rows newest first; `bars` are oldest first either way. */
  reversed: boolean;
}

export class CsvFormatError extends Error {
  override readonly name = "CsvFormatError";
}

type Column = "date" | "open" | "high" | "low" | "close" | "adjclose" | "volume";
const REQUIRED: readonly Column[] = ["date", "open", "high", "low", "close"];
const ALIASES = new Map<string, Column>([
  ["date", "date"],
  ["datetime", "date"],
  ["open", "open"],
  ["high", "high"],
  ["low", "low"],
  ["close", "close"],
  ["adjclose", "adjclose"],
  ["adjustedclose", "adjclose"],
  ["volume", "volume"],
  ["vol", "volume"],
]);
const HEADER_NAME: Record<Column, string> = {
  date: "Date",
  open: "Open",
  high: "High",
  low: "Low",
  close: "Close",
  adjclose: "Adj Close",
  volume: "Volume",
};

/** RFC 4180 fields of one line: commas separate, double quotes enclose, `""` is a quote. */
export function splitCsvLine(line: string): string[] {
  if (!line.includes('"')) return line.split(",");
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch === '"') {
      quoted = true;
    } else if (ch === ",") {
      fields.push(field);
      field = "";
    } else {
      field += ch;
    }
  }
  fields.push(field);
  return fields;
}

const normaliseHeader = (name: string) => name.toLowerCase().replace(/[\s_\-.]/g, "");

const DATE = /^(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * Epoch seconds of a Date cell: `YYYY-MM-DD` (or Stooq's older `YYYYMMDD`) at 21:00 UTC, or
 * `YYYY-MM-DD HH:MM[:SS]` with an optional `Z` or `+HH:MM` (UTC when absent) at that time.
 * Returns null for anything else, including dates that do not exist (2021-02-30).
 */
export function parseBarDate(text: string): number | null {
  const m = DATE.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const midnight = Date.UTC(year, month - 1, day);
  const check = new Date(midnight);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) {
    return null;
  }
  if (h === undefined) return midnight / 1000 + DAILY_SECONDS;
  const hours = Number(h);
  const minutes = Number(mi);
  const seconds = s === undefined ? 0 : Number(s) + (frac === undefined ? 0 : Number(frac));
  if (hours > 23 || minutes > 59 || seconds >= 60) return null;
  let offsetMinutes = 0;
  if (zone !== undefined && zone !== "Z") {
    const sign = zone[0] === "-" ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2)));
  }
  return midnight / 1000 + hours * 3600 + minutes * 60 + seconds - offsetMinutes * 60;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

function parseNumber(text: string): number | null {
  const t = text.trim();
  if (!NUMBER.test(t)) return null;
  const v = Number(t);
  return Number.isFinite(v) ? v : null;
}

/**
 * Reads a whole daily CSV. A file whose header lacks a required column throws CsvFormatError;
 * a row that cannot be read (a missing or non-numeric cell, `null` as Yahoo writes for missing
 * days, a bad date, a date not after the previous row's) is listed in `unreadable` with its line
 * number and left out of `bars`. Blank lines are not rows. A BOM and CRLF line ends are fine.
 */
export function parseDailyCsv(text: string): ParsedCsv {
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  const { headerIndex, layout } = readHeader(lines);
  const candidates: DailyBar[] = [];
  const unreadable: UnreadableRow[] = [];
  let dataLines = 0;
  for (let i = headerIndex + 1; i < lines.length; i++) {
    const raw = stripCr(lines[i]);
    if (raw.trim() === "") continue;
    dataLines++;
    const row = readRow(raw, i + 1, layout);
    if ("reason" in row) unreadable.push(row);
    else candidates.push(row);
  }
  const { bars, reversed } = inDateOrder(candidates, unreadable);
  unreadable.sort((a, b) => a.line - b.line);
  return {
    bars,
    unreadable,
    dataLines,
    hasAdjClose: layout.adjIndex !== undefined,
    hasVolume: layout.volumeIndex !== undefined,
    reversed,
  };
}

/** Where each column is in a row, and how many fields a row needs. */
interface CsvLayout {
  at(c: Column): number;
  adjIndex: number | undefined;
  volumeIndex: number | undefined;
  width: number;
}

/** The first non-blank line is the header; it must name every required column. */
function readHeader(lines: readonly string[]): { headerIndex: number; layout: CsvLayout } {
  const headerIndex = lines.findIndex(l => l.trim() !== "");
  if (headerIndex < 0) throw new CsvFormatError("the file is empty");
  const header = splitCsvLine(stripCr(lines[headerIndex])).map(h => ALIASES.get(normaliseHeader(h)));
  const columns = new Map<Column, number>();
  header.forEach((c, i) => {
    if (c !== undefined && !columns.has(c)) columns.set(c, i);
  });
  const missing = REQUIRED.filter(c => !columns.has(c));
  if (missing.length > 0) {
    throw new CsvFormatError(
      `line ${headerIndex + 1}: the header has no ${missing.map(c => HEADER_NAME[c]).join(", ")} column ` +
        `(expected Date,Open,High,Low,Close[,Adj Close][,Volume], got ${JSON.stringify(stripCr(lines[headerIndex]))})`,
    );
  }
  return {
    headerIndex,
    layout: {
      at: (c: Column) => columns.get(c) as number,
      adjIndex: columns.get("adjclose"),
      volumeIndex: columns.get("volume"),
      width: Math.max(...columns.values()) + 1,
    },
  };
}

/** One data row as a bar, or why it cannot be read. */
function readRow(raw: string, line: number, layout: CsvLayout): DailyBar | UnreadableRow {
  const { at, adjIndex, volumeIndex, width } = layout;
  const cells = splitCsvLine(raw);
  if (cells.length < width) {
    return { line, reason: `has ${cells.length} fields, the header needs at least ${width}` };
  }
  const problems: string[] = [];
  const date = cells[at("date")].trim();
  const timestamp = parseBarDate(date);
  if (timestamp === null) problems.push(`Date ${JSON.stringify(date)} is not a date (YYYY-MM-DD)`);
  const num = (column: Column, index: number): number => {
    const v = parseNumber(cells[index]);
    if (v === null)
      problems.push(`${HEADER_NAME[column]} ${JSON.stringify(cells[index].trim())} is not a number`);
    return v ?? NaN;
  };
  const open = num("open", at("open"));
  const high = num("high", at("high"));
  const low = num("low", at("low"));
  const close = num("close", at("close"));
  const adjClose = adjIndex === undefined ? null : num("adjclose", adjIndex);
  const volume = volumeIndex === undefined ? 0 : num("volume", volumeIndex);
  if (problems.length > 0) return { line, reason: problems.join("; ") };
  return {
    line,
    date,
    timestamp: timestamp as number,
    open,
    high,
    low,
    close,
    adjClose,
    // The gateway takes whole shares; fractional volumes (crypto, some funds) are rounded.
    volume: Math.round(volume),
  };
}

/**
 * The bars oldest first (some exports list the newest day first; the indicators need the oldest
 * first); a bar not after the one before it goes to `unreadable`.
 */
function inDateOrder(
  candidates: DailyBar[],
  unreadable: UnreadableRow[],
): { bars: DailyBar[]; reversed: boolean } {
  const reversed =
    candidates.length > 1 && candidates[0].timestamp > candidates[candidates.length - 1].timestamp;
  if (reversed) candidates.reverse();
  const bars: DailyBar[] = [];
  for (const bar of candidates) {
    const previous = bars[bars.length - 1];
    if (previous !== undefined && bar.timestamp <= previous.timestamp) {
      unreadable.push({
        line: bar.line,
        reason: `Date ${bar.date} is not after ${previous.date} (line ${previous.line}): rows must be in date order, each date once`,
      });
      continue;
    }
    bars.push(bar);
  }
  return { bars, reversed };
}

function stripCr(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/**
 * The price tick a bar becomes. With `adjusted`, the close is Adj Close and open, high and low are
 * scaled by the same factor (Adj Close / Close), so the bar keeps its shape and dividends and splits
 * do not show up as price jumps.
 */
export function barToTick(bar: DailyBar, symbol: string, adjusted = false): PriceTick {
  const factor = adjusted && bar.adjClose !== null && bar.close !== 0 ? bar.adjClose / bar.close : 1;
  return {
    stock_symbol: symbol,
    opening_price: bar.open * factor,
    closing_price: bar.close * factor,
    high: bar.high * factor,
    low: bar.low * factor,
    volume: bar.volume,
    timestamp: bar.timestamp,
  };
}
