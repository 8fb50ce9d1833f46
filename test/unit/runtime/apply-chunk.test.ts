import type { LogMessage } from "../../../adapters/log/types";
import { messageKey, type PriceTick } from "../../../domain/messages";
import { SymbolActor } from "../../../domain/symbol-actor";
import {
  applyChunk,
  IDEMPOTENCY_INDEX_HEADER,
  IDEMPOTENCY_KEY_HEADER,
  parseLogMessage,
  IDEMPOTENCY_USE_HEADER,
  UnappliableMessageError,
  type IdempotencyMark,
} from "../../../runtime/apply-chunk";
import type { DeadLetterRow } from "../../../runtime/batch-outputs";
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
  /** Which use of the key (the key store numbers them); absent: a message from before uses were numbered. */
  use?: number;
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
        : {
            [IDEMPOTENCY_KEY_HEADER]: s.key,
            [IDEMPOTENCY_INDEX_HEADER]: String(s.index),
            ...(s.use === undefined ? {} : { [IDEMPOTENCY_USE_HEADER]: String(s.use) }),
          },
  }));
}

/** Applies `log` from `from` in chunks of `size`, to `actor` and `marks`; returns the closes stored. */
function run(
  log: LogMessage[],
  actor: SymbolActor,
  marks: Map<string, IdempotencyMark>,
  from = 0,
  size = 3,
): { closes: number[]; duplicates: number; deadLetters: DeadLetterRow[] } {
  const closes: number[] = [];
  const deadLetters: DeadLetterRow[] = [];
  let duplicates = 0;
  for (let i = from; i < log.length; i += size) {
    const chunk = log.slice(i, i + size);
    const parsed = chunk.map(m => parseLogMessage(m, PARTITIONS));
    const outcome = applyChunk(0, chunk, parsed, () => actor, marks);
    // As the host does once the chunk's results are stored.
    for (const [key, mark] of outcome.marks) marks.set(key, mark);
    closes.push(...outcome.outputs.ticks.map(t => t.close));
    deadLetters.push(...outcome.outputs.deadLetters);
    duplicates += outcome.duplicates;
  }
  return { closes, duplicates, deadLetters };
}

const request = (key: string, from: number, to: number, use?: number): Sent[] =>
  ticks.slice(from, to).map((tick, i) => ({ tick, key, index: i, use }));

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
    for (const [key, mark] of outcome.marks) marks.set(key, mark);
    // Read again from the start (a replay), with the marks recorded after it: both copies were
    // decided before (the first stored, the second skipped), so neither is stored again.
    const again = applyChunk(
      0,
      log,
      log.map(m => parseLogMessage(m, PARTITIONS)),
      () => {
        throw new Error("no actor");
      },
      marks,
    );
    expect(again.outputs.economic).toEqual([]);
  });

  it("never stores on a replay a market-wide copy that the first run skipped, after the key's mark moved on", () => {
    const gdp = (index: number, offset: number): LogMessage => ({
      partition: 0,
      offset,
      key: "GDP Growth Rate",
      value: Buffer.from(
        JSON.stringify({
          data_type: "economic_indicator",
          indicator_name: "GDP Growth Rate",
          value: 2.5 + index,
          timestamp: 1_700_000_100 + index,
        }),
      ),
      timestamp: 1_700_000_000_000 + offset,
      headers: {
        [IDEMPOTENCY_KEY_HEADER]: "e1",
        [IDEMPOTENCY_USE_HEADER]: "1",
        [IDEMPOTENCY_INDEX_HEADER]: String(index),
      },
    });
    // Index 0, a retried copy of it, then index 1 of the same request.
    const log = [gdp(0, 0), gdp(0, 1), gdp(1, 2)];
    const noActor = () => {
      throw new Error("no actor for a market-wide indicator");
    };
    const parse = (chunk: LogMessage[]) => chunk.map(m => parseLogMessage(m, PARTITIONS));
    const first = applyChunk(0, log, parse(log), noActor, new Map());
    expect(first.outputs.economic.map(e => e.offset)).toEqual([0, 2]);
    // The marks were recorded after offset 2, the offset commit was lost: the log is read from 0 again.
    const replay = applyChunk(0, log, parse(log), noActor, first.marks);
    expect(replay.outputs.economic).toEqual([]);
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

  it("applies a new use of a key after the key store handed it out again, however its indexes compare", () => {
    // Use 1 of key k sent ticks 0..3; after its TTL the key store gave k to another request (use 2).
    const log = logOf([...request("k", 0, 4, 1), ...request("k", 4, 7, 2), ...request("k", 4, 7, 2)]);
    const actor = new SymbolActor("AAPL", SETTINGS);
    const { closes, duplicates } = run(log, actor, new Map());
    expect(closes).toEqual(ticks.slice(0, 7).map(t => t.closing_price));
    expect(duplicates).toBe(3);
  });

  it("dead-letters a late copy of an older use of a key that was reused since, and applies it nowhere", () => {
    const log = logOf([...request("k", 0, 2, 1), ...request("k", 2, 4, 2), ...request("k", 0, 2, 1)]);
    const actor = new SymbolActor("AAPL", SETTINGS);
    const { closes, deadLetters } = run(log, actor, new Map());
    expect(closes).toEqual(ticks.slice(0, 4).map(t => t.closing_price));
    expect(deadLetters.map(d => [d.offset, d.kind])).toEqual([
      [4, "unappliable"],
      [5, "unappliable"],
    ]);
    expect(deadLetters[0].reason).toMatch(/late copy of use 1 of the key, which was reused since \(use 2\)/);
    expect(actor.lastOffset).toBe(5);
  });

  it("compares a message from before uses were numbered with a numbered mark by index alone", () => {
    // Sent before the upgrade (no use header), retried after it (use 7): still one request.
    const log = logOf([...request("k", 0, 3), ...request("k", 0, 3, 7)]);
    const { closes, duplicates } = run(log, new SymbolActor("AAPL", SETTINGS), new Map());
    expect(closes).toEqual(ticks.slice(0, 3).map(t => t.closing_price));
    expect(duplicates).toBe(3);
  });
});

describe("applyChunk with a message its actor cannot hold", () => {
  const huge = (close: number): PriceTick => ({
    stock_symbol: "AAPL",
    opening_price: close,
    closing_price: close,
    high: close,
    low: close,
    volume: 1,
    timestamp: 1_700_000_000,
  });

  const asParsed = (log: LogMessage[]) =>
    log.map(m => ({ symbol: "AAPL", message: JSON.parse(String(m.value)) as PriceTick }));

  it("says which message would leave the actor's state not finite", () => {
    const log = logOf([{ tick: ticks[0] }, { tick: huge(1.7e308) }, { tick: huge(1.7e308) }]);
    const actor = new SymbolActor("AAPL", SETTINGS);
    // Past the ingest bounds, so built as parsed messages: as if another producer wrote them.
    const parsed = asParsed(log);
    let thrown: unknown;
    try {
      applyChunk(0, log, parsed, () => actor, new Map());
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(UnappliableMessageError);
    expect((thrown as UnappliableMessageError).offset).toBe(2);
  });

  it("dead-letters the messages it is told were refused, and applies the rest", () => {
    const log = logOf([
      { tick: ticks[0] },
      { tick: huge(1.7e308) },
      { tick: huge(1.7e308) },
      { tick: ticks[1] },
    ]);
    const actor = new SymbolActor("AAPL", SETTINGS);
    const parsed = asParsed(log);
    const refused = new Map([[2, { kind: "unappliable" as const, reason: "would overflow" }]]);
    const outcome = applyChunk(0, log, parsed, () => actor, new Map(), refused);
    expect(outcome.outputs.ticks.map(t => t.offset)).toEqual([0, 1, 3]);
    expect(outcome.outputs.deadLetters).toMatchObject([
      { offset: 2, kind: "unappliable", reason: "would overflow" },
    ]);
    expect(actor.isFinite()).toBe(true);
    expect(actor.lastOffset).toBe(3);
  });
});
