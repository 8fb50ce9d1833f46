import type { LogMessage } from "../../../adapters/log/types";
import { messageKey, type PriceTick } from "../../../domain/messages";
import { SymbolActor } from "../../../domain/symbol-actor";
import {
  applyChunk,
  IDEMPOTENCY_INDEX_HEADER,
  IDEMPOTENCY_KEY_HEADER,
  parseLogMessage,
  type IdempotencyMark,
} from "../../../runtime/apply-chunk";
import { randomWalk, seededRandom, ticksFromCloses } from "../domain/fixtures";

/**
 * The pure step's handling of client requests sent with an Idempotency-Key: a request's messages
 * carry the key and their index; a copy of a message that reached the partition before is
 * skipped, and a replay of the log decides exactly as the first run did.
 */

const SETTINGS = { smaPeriod: 3, emaPeriod: 3, rsiPeriod: 2, rsiOversold: 30, rsiOverbought: 70 };
const PARTITIONS = 1;
const ticks = ticksFromCloses(seededRandom(3), "AAPL", randomWalk(seededRandom(4), 12)) as PriceTick[];

interface Sent {
  tick: PriceTick;
  key?: string;
  index?: number;
}

/** The log of partition 0 holding `sent` in order. */
function logOf(sent: Sent[]): LogMessage[] {
  return sent.map((s, offset) => ({
    partition: 0,
    offset,
    key: messageKey(s.tick),
    value: Buffer.from(JSON.stringify(s.tick)),
    timestamp: 1_700_000_000_000 + offset,
    headers:
      s.key === undefined
        ? undefined
        : { [IDEMPOTENCY_KEY_HEADER]: s.key, [IDEMPOTENCY_INDEX_HEADER]: String(s.index) },
  }));
}

/** Applies `log` from `from` in chunks of `size`, to `actor` and `marks`; returns the closes stored. */
function run(
  log: LogMessage[],
  actor: SymbolActor,
  marks: Map<string, IdempotencyMark>,
  from = 0,
  size = 3,
): { closes: number[]; duplicates: number } {
  const closes: number[] = [];
  let duplicates = 0;
  for (let i = from; i < log.length; i += size) {
    const chunk = log.slice(i, i + size);
    const parsed = chunk.map(m => parseLogMessage(m, PARTITIONS));
    const outcome = applyChunk(0, chunk, parsed, () => actor, marks);
    closes.push(...outcome.outputs.ticks.map(t => t.close));
    duplicates += outcome.duplicates;
  }
  return { closes, duplicates };
}

const request = (key: string, from: number, to: number): Sent[] =>
  ticks.slice(from, to).map((tick, i) => ({ tick, key, index: i }));

describe("applyChunk with Idempotency-Key headers", () => {
  it("applies a request that reached the log twice once, and the next request after it", () => {
    const log = logOf([...request("r1", 0, 4), ...request("r1", 0, 4), ...request("r2", 4, 8)]);
    const actor = new SymbolActor("AAPL", SETTINGS);
    const { closes, duplicates } = run(log, actor, new Map());
    expect(closes).toEqual(ticks.slice(0, 8).map(t => t.closing_price));
    expect(duplicates).toBe(4);
    expect(actor.seq).toBe(8);
    // The skipped copies still count as read: the actor stands at the last offset.
    expect(actor.lastOffset).toBe(log.length - 1);
  });

  it("applies the part of a retried request that did not reach the log the first time", () => {
    // The first attempt got only its first two messages into the log before it failed.
    const log = logOf([...request("r1", 0, 2), ...request("r1", 0, 5)]);
    const { closes, duplicates } = run(log, new SymbolActor("AAPL", SETTINGS), new Map());
    expect(closes).toEqual(ticks.slice(0, 5).map(t => t.closing_price));
    expect(duplicates).toBe(2);
  });

  it("stores a market-wide indicator of a request that reached the log twice once", () => {
    const gdp = {
      data_type: "economic_indicator",
      indicator_name: "GDP Growth Rate",
      value: 2.5,
      timestamp: 1_700_000_100,
    };
    const log: LogMessage[] = [0, 1].map(offset => ({
      partition: 0,
      offset,
      key: "GDP Growth Rate",
      value: Buffer.from(JSON.stringify(gdp)),
      timestamp: 1_700_000_000_000 + offset,
      headers: { [IDEMPOTENCY_KEY_HEADER]: "e1", [IDEMPOTENCY_INDEX_HEADER]: "0" },
    }));
    const marks = new Map<string, IdempotencyMark>();
    const outcome = applyChunk(
      0,
      log,
      log.map(m => parseLogMessage(m, PARTITIONS)),
      () => {
        throw new Error("no actor for a market-wide indicator");
      },
      marks,
    );
    expect(outcome.outputs.economic.map(e => e.offset)).toEqual([0]);
    expect(outcome.duplicates).toBe(1);
    // Read again from the start (a replay), the first copy is stored again under the same offset
    // (the table ignores it) and the second is still skipped.
    const again = applyChunk(
      0,
      log,
      log.map(m => parseLogMessage(m, PARTITIONS)),
      () => {
        throw new Error("no actor");
      },
      marks,
    );
    expect(again.outputs.economic.map(e => e.offset)).toEqual([0]);
  });

  it("leaves messages without the header alone, however alike", () => {
    const plain = ticks.slice(0, 3).map(tick => ({ tick }));
    const { closes, duplicates } = run(
      logOf([...plain, ...plain]),
      new SymbolActor("AAPL", SETTINGS),
      new Map(),
    );
    expect(closes).toEqual([...ticks.slice(0, 3), ...ticks.slice(0, 3)].map(t => t.closing_price));
    expect(duplicates).toBe(0);
  });

  it("decides the same on a replay from a record taken part-way, with the marks recorded alongside", () => {
    const log = logOf([
      ...request("r1", 0, 4),
      ...request("r2", 4, 6),
      ...request("r1", 0, 4),
      ...request("r3", 6, 9),
    ]);
    const whole = run(log, new SymbolActor("AAPL", SETTINGS), new Map());

    // A node recorded the actor and the marks after offset 7 (inside the repeat of r1), then
    // crashed; the log is read again from the last commit, offset 3.
    const actor = new SymbolActor("AAPL", SETTINGS);
    const marks = new Map<string, IdempotencyMark>();
    const first = run(log.slice(0, 8), actor, marks);
    const recorded = SymbolActor.restore(JSON.parse(JSON.stringify(actor.snapshot())), SETTINGS);
    const recordedMarks = new Map([...marks].map(([k, v]) => [k, { ...v }]));
    const replayed = run(log, recorded, recordedMarks, 3);

    expect([...first.closes, ...replayed.closes]).toEqual(whole.closes);
    expect(recorded.snapshot()).toEqual(
      (() => {
        const a = new SymbolActor("AAPL", SETTINGS);
        run(log, a, new Map());
        return a.snapshot();
      })(),
    );
  });
});
