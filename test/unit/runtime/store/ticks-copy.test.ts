import type { TickRow } from "../../../../runtime/batch-outputs";
import { pgMicros, storedMinute, TICK_COLUMNS, tickCopyData } from "../../../../runtime/store/ticks-copy";

/**
 * The pure COPY encoder and the times Postgres stores. That Postgres stores what COPY sends to the
 * bit, exactly as the checked insert would, is the results writer's integration test; this one
 * reads the bytes back by COPY's binary file format and checks the arithmetic of the times.
 */

/** 2000-01-01 in Unix seconds: Postgres' epoch. */
const E = 946_684_800;
/** 2^-7 s: a difference of seconds that is exactly 7812.5 microseconds as a double. */
const HALF_STEP = 0.0078125;

describe("pgMicros", () => {
  it("counts microseconds from 2000-01-01", () => {
    expect(pgMicros(E)).toBe(0);
    expect(pgMicros(1_700_000_000)).toBe((1_700_000_000 - E) * 1e6);
    expect(pgMicros(E - 1)).toBe(-1e6);
  });

  it("rounds a half microsecond to even, as C's rint does, on either side of the epoch", () => {
    expect(pgMicros(E + HALF_STEP)).toBe(7812);
    expect(pgMicros(E + 3 * HALF_STEP)).toBe(23438);
    expect(pgMicros(E - HALF_STEP)).toBe(-7812);
    expect(pgMicros(E - 3 * HALF_STEP)).toBe(-23438);
  });

  it("rounds other fractions to the nearest microsecond", () => {
    // 1.7e9 s is a double of 2^-22 s steps: 0.238 us and 0.715 us past a second.
    const step = 2 ** -22;
    expect(pgMicros(1_700_000_000 + step)).toBe(pgMicros(1_700_000_000));
    expect(pgMicros(1_700_000_000 + 3 * step)).toBe(pgMicros(1_700_000_000) + 1);
  });
});

describe("storedMinute", () => {
  // A minute's start, and the double 2^-22 s (0.24 us) below it.
  const minute = 1_700_000_040;
  const step = 2 ** -22;

  it("puts a time in the minute it falls in", () => {
    expect(storedMinute(minute)).toBe(minute);
    expect(storedMinute(minute + 59.9)).toBe(minute);
    expect(storedMinute(minute - 0.1)).toBe(minute - 60);
  });

  it("puts a time within half a microsecond below a minute in that minute, as Postgres stores it", () => {
    expect(storedMinute(minute - step)).toBe(minute);
    expect(storedMinute(minute - 2 * step)).toBe(minute);
    // 0.72 us below: stored one microsecond before the minute.
    expect(storedMinute(minute - 3 * step)).toBe(minute - 60);
  });
});

/** One row as COPY's binary format carries it: each field's bytes, or null. */
type Fields = (Buffer | null)[];

/** Reads a COPY binary file: its header, each row's fields, and the trailer. */
function readCopy(buf: Buffer): { header: Buffer; rows: Fields[]; rest: number } {
  const header = buf.subarray(0, 19);
  let at = 19;
  const rows: Fields[] = [];
  for (;;) {
    const count = buf.readInt16BE(at);
    at += 2;
    if (count === -1) break;
    const fields: Fields = [];
    for (let f = 0; f < count; f++) {
      const length = buf.readInt32BE(at);
      at += 4;
      if (length === -1) {
        fields.push(null);
        continue;
      }
      fields.push(buf.subarray(at, at + length));
      at += length;
    }
    rows.push(fields);
  }
  return { header, rows, rest: buf.length - at };
}

const int64 = (b: Buffer | null) => b && (b.length === 8 ? b.readBigInt64BE() : `length ${b.length}`);
const int32 = (b: Buffer | null) => b && (b.length === 4 ? b.readInt32BE() : `length ${b.length}`);
const float8 = (b: Buffer | null) => b && (b.length === 8 ? b.readDoubleBE() : `length ${b.length}`);

/** A row's fields decoded by their column types. */
function decoded(fields: Fields) {
  const [symbol, seq, ts, open, close, high, low, volume, sma, ema, rsi, partition, offset, logTs] = fields;
  return {
    symbol: symbol?.toString("utf8"),
    seq: int64(seq),
    ts: int64(ts),
    prices: [open, close, high, low].map(float8),
    volume: int64(volume),
    indicators: [sma, ema, rsi].map(float8),
    partition: int32(partition),
    offset: int64(offset),
    logTs: int64(logTs),
  };
}

function tick(symbol: string, seq: number, over: Partial<TickRow> = {}): TickRow {
  return {
    symbol,
    seq,
    timestamp: 1_700_000_000.1234565 + seq,
    open: 100.1,
    close: Math.PI * 32,
    high: 1e308,
    low: Number.MIN_VALUE,
    volume: 2 ** 53 - 1,
    sma: 100.5,
    ema: null,
    rsi: 0,
    offset: 2 ** 40 + seq,
    logTimestamp: 1_700_000_000_123 + seq,
    ...over,
  };
}

describe("tickCopyData", () => {
  const parts = [
    { partition: 3, ticks: [tick("AAPL", 1), tick("ÄPFEL", 2, { sma: null, rsi: null })] },
    { partition: 0, ticks: [] },
    { partition: 11, ticks: [tick("BRK.B", 9, { timestamp: E - 3 * HALF_STEP, logTimestamp: 0 })] },
  ];
  const copy = readCopy(tickCopyData(parts));

  it("starts with COPY's signature, no flags and no header extension, and ends with the trailer", () => {
    expect(copy.header).toEqual(
      Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), Buffer.alloc(8)]),
    );
    expect(copy.rest).toBe(0);
  });

  it("writes every tick of every partition, in order, with one field per column", () => {
    expect(copy.rows.map(r => r.length)).toEqual([14, 14, 14]);
    expect(TICK_COLUMNS).toHaveLength(14);
    expect(copy.rows.map(r => decoded(r).symbol)).toEqual(["AAPL", "ÄPFEL", "BRK.B"]);
  });

  it("writes each value in its column's binary form: doubles to the bit, times in microseconds since 2000", () => {
    const [first, second, third] = copy.rows.map(decoded);
    const t = parts[0].ticks[0];
    expect(first).toEqual({
      symbol: "AAPL",
      seq: 1n,
      ts: BigInt(pgMicros(t.timestamp)),
      prices: [t.open, t.close, t.high, t.low],
      volume: BigInt(2 ** 53 - 1),
      indicators: [100.5, null, 0],
      partition: 3,
      offset: BigInt(2 ** 40 + 1),
      logTs: BigInt((t.logTimestamp - E * 1000) * 1000),
    });
    // A symbol's length is its UTF-8 bytes; nulls are length -1.
    expect(copy.rows[1][0]).toEqual(Buffer.from("ÄPFEL", "utf8"));
    expect(second.indicators).toEqual([null, null, null]);
    // Times before 2000 are negative: to the microsecond, rounded to even; 1970 for the log's time.
    expect(third).toMatchObject({ partition: 11, ts: -23438n, logTs: BigInt(-E * 1e6) });
  });

  it("holds only the header and trailer when there is no tick", () => {
    const empty = readCopy(tickCopyData([{ partition: 0, ticks: [] }]));
    expect(empty.rows).toEqual([]);
    expect(empty.rest).toBe(0);
  });
});
