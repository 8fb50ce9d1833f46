import type { TickRow } from "../batch-outputs";

/**
 * Tick rows in COPY's binary format, and the times Postgres stores: pure, no I/O. Every value
 * reaches the table as the checking insert would store it: doubles as their eight bytes (the very
 * value, no text round trip), times to the microsecond as `to_timestamp` rounds them.
 */

export const TICK_COLUMNS = [
  "symbol",
  "seq",
  '"timestamp"',
  "opening_price",
  "closing_price",
  "high",
  "low",
  "volume",
  "moving_average",
  "exponential_moving_average",
  "relative_strength_index",
  "kafka_partition",
  "kafka_offset",
  "log_timestamp",
] as const;

/** 2000-01-01, Postgres' own epoch, in Unix seconds. */
const POSTGRES_EPOCH_SECONDS = 946684800;

/** COPY's binary file header: signature, flags, header extension length. */
const COPY_BINARY_HEADER = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
]);
const TWO_POW_32 = 4294967296;

/**
 * The timestamptz Postgres' `to_timestamp(seconds)` stores, in microseconds since its own epoch
 * (2000-01-01): the seconds moved to that epoch, scaled, and rounded half to even (C's rint), in
 * that order.
 */
export function pgMicros(seconds: number): number {
  const x = (seconds - POSTGRES_EPOCH_SECONDS) * 1e6;
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The start of the minute a tick of time `seconds` is stored in, epoch seconds: from its time as Postgres stores it. */
export function storedMinute(seconds: number): number {
  return Math.floor((pgMicros(seconds) + POSTGRES_EPOCH_SECONDS * 1e6) / 60e6) * 60;
}

/**
 * Tick rows of several partitions in COPY's binary format, columns in the order of
 * `TICK_COLUMNS`: doubles as their eight bytes, times as microseconds since 2000-01-01 (as
 * `to_timestamp` rounds them), nulls as length -1.
 */
export function tickCopyData(parts: readonly { ticks: readonly TickRow[]; partition: number }[]): Buffer {
  let symbolBytes = 0;
  let rows = 0;
  for (const part of parts) {
    rows += part.ticks.length;
    for (const t of part.ticks) symbolBytes += Buffer.byteLength(t.symbol);
  }
  // Per row: field count (2), 14 lengths (56), 3 bigints and 2 times (40), 7 doubles (56), one int (4).
  const buf = Buffer.allocUnsafe(COPY_BINARY_HEADER.length + rows * 158 + symbolBytes + 2);
  let at = COPY_BINARY_HEADER.copy(buf, 0);
  const int64 = (v: number) => {
    const hi = Math.floor(v / TWO_POW_32);
    at = buf.writeInt32BE(8, at);
    at = buf.writeInt32BE(hi, at);
    at = buf.writeUInt32BE(v - hi * TWO_POW_32, at);
  };
  const float8 = (v: number | null) => {
    if (v === null) {
      at = buf.writeInt32BE(-1, at);
      return;
    }
    at = buf.writeInt32BE(8, at);
    at = buf.writeDoubleBE(v, at);
  };
  for (const { ticks, partition } of parts)
    for (const t of ticks) {
      at = buf.writeInt16BE(TICK_COLUMNS.length, at);
      const symbolAt = at + 4;
      const n = buf.write(t.symbol, symbolAt, "utf8");
      buf.writeInt32BE(n, at);
      at = symbolAt + n;
      int64(t.seq);
      int64(pgMicros(t.timestamp));
      float8(t.open);
      float8(t.close);
      float8(t.high);
      float8(t.low);
      int64(t.volume);
      float8(t.sma);
      float8(t.ema);
      float8(t.rsi);
      at = buf.writeInt32BE(4, at);
      at = buf.writeInt32BE(partition, at);
      int64(t.offset);
      int64((t.logTimestamp - POSTGRES_EPOCH_SECONDS * 1000) * 1000);
    }
  at = buf.writeInt16BE(-1, at);
  return buf.subarray(0, at);
}
