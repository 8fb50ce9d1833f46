import fc from "fast-check";
import { EMA } from "../../../domain/indicators/ema";
import { RSI } from "../../../domain/indicators/rsi";
import { recomputeIndicators } from "../../../domain/recompute";
import { SMA } from "../../../domain/indicators/sma";
import type { PriceTick, SymbolSideData } from "../../../domain/messages";
import {
  ActorOutput,
  ActorSnapshot,
  IncompatibleSnapshotError,
  IndicatorSettings,
  SettingsChangedError,
  SymbolActor,
} from "../../../domain/symbol-actor";
import { orderBook, randomWalk, seededRandom, T0, ticksFromCloses } from "./fixtures";

const SETTINGS: IndicatorSettings = {
  smaPeriod: 20,
  emaPeriod: 20,
  rsiPeriod: 14,
  rsiOversold: 30,
  rsiOverbought: 70,
};

type Message = PriceTick | SymbolSideData;

/** An actor's snapshot as the build before exact volume totals wrote it (no `totalVolumeCompensation`). */
const OLDER_SNAPSHOT = `{"v":1,"symbol":"XOM","settings":{"smaPeriod":3,"emaPeriod":3,"rsiPeriod":2,"rsiOversold":30,
"rsiOverbought":70},"seq":5,"sideSeq":0,"lastOffset":4,"lastTick":{"seq":5,"offset":4,"timestamp":1700000004,
"open":100,"close":98.5,"high":100.5,"low":98,"volume":6000},"sma":{"window":[99.75,102.125,98.5],
"sum":{"sum":300.375,"compensation":0},"updatesSinceResum":5},"ema":{"seen":3,"seedSum":301.5,"ema":99.90625},
"rsi":{"previousClose":98.5,"changes":2,"gainSum":1.25,"lossSum":1.75,"avgGain":0.75,"avgLoss":2.03125},
"signals":{"previousRsi":26.966292134831463},"aggregates":{"count":5,"totalVolume":27500,
"sumOpen":{"sum":500,"compensation":0},"sumClose":{"sum":502.125,"compensation":0},"lowest":98,"highest":102.625,
"firstTimestamp":1700000000,"lastTimestamp":1700000004},"sideData":{"orderBook":{"buy":null,"sell":null},
"newsSentiment":null,"marketData":null},"lastSignal":{"symbol":"XOM","side":"buy","rsi":26.966292134831463,
"price":98.5,"timestamp":1700000004,"seq":5}}`;

const viaJson = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

function sampleTicks(count: number, seed = 61): PriceTick[] {
  const random = seededRandom(seed);
  return ticksFromCloses(random, "AAPL", randomWalk(random, count));
}

describe("SymbolActor", () => {
  it("starts with no ticks, no offset and no indicator values", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    expect([actor.seq, actor.sideSeq, actor.lastOffset]).toEqual([0, 0, -1]);
    expect(actor.view()).toMatchObject({
      symbol: "AAPL",
      lastTick: null,
      sma: null,
      ema: null,
      rsi: null,
      lastSignal: null,
    });
    expect(actor.view().aggregates.tick_count).toBe(0);
  });

  it("numbers price ticks from 1 and reports the tick with its indicators", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    const [t] = sampleTicks(1);
    expect(actor.apply(t, 7)).toEqual({
      kind: "tick",
      tick: {
        symbol: "AAPL",
        seq: 1,
        offset: 7,
        timestamp: t.timestamp,
        open: t.opening_price,
        close: t.closing_price,
        high: t.high,
        low: t.low,
        volume: t.volume,
        sma: null,
        ema: null,
        rsi: null,
      },
      signal: null,
    });
    expect([actor.seq, actor.lastOffset]).toEqual([1, 7]);
  });

  it("computes the same SMA, EMA and RSI as the standalone indicators", () => {
    const settings = { ...SETTINGS, smaPeriod: 10, emaPeriod: 12, rsiPeriod: 9 };
    const actor = new SymbolActor("AAPL", settings);
    const [sma, ema, rsi] = [new SMA(10), new EMA(12), new RSI(9)];
    for (const [i, t] of sampleTicks(500).entries()) {
      const out = actor.apply(t, i);
      const c = t.closing_price;
      expect(out?.kind === "tick" && [out.tick.sma, out.tick.ema, out.tick.rsi]).toEqual([
        sma.update(c),
        ema.update(c),
        rsi.update(c),
      ]);
    }
    expect([actor.view().sma, actor.view().ema, actor.view().rsi]).toEqual([sma.value, ema.value, rsi.value]);
  });

  it("shows the last tick and running aggregates in its view", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    const ticks = sampleTicks(50);
    ticks.forEach((t, i) => actor.apply(t, 100 + i));
    const last = ticks[49];
    const view = actor.view();
    expect(view.lastTick).toEqual({
      seq: 50,
      offset: 149,
      timestamp: last.timestamp,
      open: last.opening_price,
      close: last.closing_price,
      high: last.high,
      low: last.low,
      volume: last.volume,
    });
    expect(view.aggregates.tick_count).toBe(50);
    expect(view.aggregates.total_volume).toBe(ticks.reduce((s, t) => s + t.volume, 0));
    expect(view.aggregates.lowest_price).toBe(Math.min(...ticks.map(t => t.low)));
    expect(view.aggregates.highest_price).toBe(Math.max(...ticks.map(t => t.high)));
    expect(view.settings).toEqual(SETTINGS);
    expect(viaJson(view)).toEqual(view);
  });

  it("gives side data their own sequence, updates the view, and leaves the tick sequence alone", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    actor.apply(sampleTicks(1)[0], 0);
    const out = actor.apply(orderBook("AAPL", "sell", 101.5, 40, T0 + 3), 1);
    expect(out).toEqual({
      kind: "side",
      side: {
        symbol: "AAPL",
        kind: "order_book",
        sideSeq: 1,
        offset: 1,
        timestamp: T0 + 3,
        payload: orderBook("AAPL", "sell", 101.5, 40, T0 + 3),
      },
    });
    const sentiment: SymbolSideData = {
      data_type: "news_sentiment",
      stock_symbol: "AAPL",
      sentiment_score: -0.25,
      sentiment_magnitude: 1.5,
      timestamp: T0 + 4,
    };
    expect(actor.apply(sentiment, 2)).toMatchObject({
      kind: "side",
      side: { kind: "news_sentiment", sideSeq: 2 },
    });
    expect([actor.seq, actor.sideSeq, actor.lastOffset]).toEqual([1, 2, 2]);
    expect(actor.view().sideData).toEqual({
      orderBook: { buy: null, sell: { price: 101.5, quantity: 40, timestamp: T0 + 3 } },
      newsSentiment: { score: -0.25, magnitude: 1.5, timestamp: T0 + 4 },
      marketData: null,
    });
  });

  it("returns null and changes nothing for an offset it already applied", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    const ticks = sampleTicks(30);
    ticks.forEach((t, i) => actor.apply(t, 10 + 2 * i));
    const before = JSON.stringify(actor.snapshot());
    expect(actor.apply(ticks[5], 10)).toBeNull();
    expect(actor.apply(ticks[29], 68)).toBeNull();
    expect(actor.apply(orderBook("AAPL", "buy", 1, 1), 67)).toBeNull();
    expect(JSON.stringify(actor.snapshot())).toBe(before);
    expect(actor.apply(ticks[0], 69)).not.toBeNull();
  });

  it("rejects a message for another symbol and an offset that is not a whole number", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    const [t] = sampleTicks(1);
    expect(() => actor.apply({ ...t, stock_symbol: "MSFT" }, 0)).toThrow(/MSFT/);
    expect(() => actor.apply(t, Number.NaN)).toThrow(RangeError);
    expect(() => actor.apply(t, -1)).toThrow(RangeError);
    expect(actor.lastOffset).toBe(-1);
  });

  it("rejects invalid settings", () => {
    expect(() => new SymbolActor("AAPL", { ...SETTINGS, smaPeriod: 0 })).toThrow(RangeError);
    expect(() => new SymbolActor("AAPL", { ...SETTINGS, rsiOversold: 80 })).toThrow(RangeError);
  });

  describe("snapshots", () => {
    it("are versioned plain JSON that carries the settings", () => {
      const actor = new SymbolActor("AAPL", SETTINGS);
      sampleTicks(40).forEach((t, i) => actor.apply(t, i));
      const s = actor.snapshot();
      expect(s.v).toBe(1);
      expect(s.settings).toEqual(SETTINGS);
      expect(viaJson(s)).toEqual(s);
    });

    it("restore an actor whose view and snapshot equal the original's", () => {
      const actor = new SymbolActor("AAPL", SETTINGS);
      sampleTicks(40).forEach((t, i) => actor.apply(t, i));
      actor.apply(orderBook("AAPL", "buy", 99, 3), 40);
      const restored = SymbolActor.restore(viaJson(actor.snapshot()), SETTINGS);
      expect(restored.view()).toEqual(actor.view());
      expect(JSON.stringify(restored.snapshot())).toBe(JSON.stringify(actor.snapshot()));
      expect([restored.seq, restored.sideSeq, restored.lastOffset]).toEqual([40, 1, 40]);
    });

    it("do not share state with the actor they came from", () => {
      const actor = new SymbolActor("AAPL", SETTINGS);
      actor.apply(orderBook("AAPL", "buy", 99, 3), 0);
      const s = actor.snapshot();
      (s.sideData.orderBook.buy as { price: number }).price = 1;
      s.sma.window.push(5);
      expect(actor.view().sideData.orderBook.buy?.price).toBe(99);
      expect(actor.snapshot().sma.window).toEqual([]);
    });

    it.each(Object.keys(SETTINGS) as (keyof IndicatorSettings)[])(
      "cannot be restored under a different %s",
      key => {
        const snapshot = new SymbolActor("AAPL", SETTINGS).snapshot();
        const other = { ...SETTINGS, [key]: SETTINGS[key] + 1 };
        expect(() => SymbolActor.restore(snapshot, other)).toThrow(IncompatibleSnapshotError);
        expect(() => SymbolActor.restore(snapshot, other)).toThrow(new RegExp(key));
      },
    );

    it("of an unknown version cannot be restored, and the error is not retriable", () => {
      const snapshot = { ...new SymbolActor("AAPL", SETTINGS).snapshot(), v: 2 } as unknown as ActorSnapshot;
      let error: unknown;
      try {
        SymbolActor.restore(snapshot, SETTINGS);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(IncompatibleSnapshotError);
      expect(error).toBeInstanceOf(Error);
      expect((error as IncompatibleSnapshotError).retriable).toBe(false);
      expect((error as Error).message).toMatch(/version 2/);
    });

    it("written by the build before volume totals were exact still restore, and continue bit-identically", () => {
      // Five ticks of XOM under these settings, as that build stored them: `totalVolume` a plain number.
      const settings = { smaPeriod: 3, emaPeriod: 3, rsiPeriod: 2, rsiOversold: 30, rsiOverbought: 70 };
      const older = JSON.parse(OLDER_SNAPSHOT) as ActorSnapshot;
      expect(older.aggregates).not.toHaveProperty("totalVolumeCompensation");
      const tick = (i: number, close: number): PriceTick => ({
        stock_symbol: "XOM",
        opening_price: 100,
        closing_price: close,
        high: Math.max(100, close) + 0.5,
        low: Math.min(100, close) - 0.5,
        volume: 5_000 + 250 * i,
        timestamp: 1_700_000_000 + i,
      });
      const closes = [100.25, 101.5, 99.75, 102.125, 98.5, 97.25, 99, 103.75, 101.125, 100];
      const fresh = new SymbolActor("XOM", settings);
      const outputs = closes.map((c, i) => fresh.apply(tick(i, c), i));
      const restored = SymbolActor.restore(older, settings);
      const continued = closes.slice(5).map((c, i) => restored.apply(tick(i + 5, c), i + 5));
      expect(continued).toEqual(outputs.slice(5));
      expect(JSON.stringify(restored.snapshot())).toBe(JSON.stringify(fresh.snapshot()));
      expect(restored.totalVolumeExact()).toBe(String(closes.reduce((s, _, i) => s + 5_000 + 250 * i, 0)));
    });

    it("carry the total volume exactly past 2^53, and a restored actor continues with it", () => {
      const random = seededRandom(67);
      const ticks = sampleTicks(30_000, 67).map(t => ({ ...t, volume: 1e12 - Math.floor(random() * 1e3) }));
      const actor = new SymbolActor("AAPL", SETTINGS);
      let restored = new SymbolActor("AAPL", SETTINGS);
      ticks.forEach((t, i) => {
        actor.apply(t, i);
        restored.apply(t, i);
        if (i % 7_000 === 0) restored = SymbolActor.restore(viaJson(restored.snapshot()), SETTINGS);
      });
      const exact = ticks.reduce((s, t) => s + BigInt(t.volume), 0n);
      expect(exact).toBeGreaterThan(2n ** 53n);
      expect(BigInt(ticks.reduce((s, t) => s + t.volume, 0))).not.toBe(exact);
      expect(restored.totalVolumeExact()).toBe(exact.toString());
      expect(JSON.stringify(restored.snapshot())).toBe(JSON.stringify(actor.snapshot()));
      expect(restored.view().aggregates.total_volume).toBe(Number(exact));
    });

    it("that are damaged cannot be restored", () => {
      const actor = new SymbolActor("AAPL", SETTINGS);
      sampleTicks(30).forEach((t, i) => actor.apply(t, i));
      const good = actor.snapshot();
      const damaged: unknown[] = [
        { ...good, sma: { ...good.sma, window: Array(21).fill(1) } },
        { ...good, rsi: { ...good.rsi, avgGain: null } },
        { ...good, seq: "30" },
        { ...good, lastTick: null },
        null,
      ];
      for (const d of damaged) {
        expect(() => SymbolActor.restore(d as ActorSnapshot, SETTINGS)).toThrow(IncompatibleSnapshotError);
      }
    });
  });

  describe("replay law (property)", () => {
    const price = fc.oneof(
      fc.constantFrom(100, 101, 99.5),
      fc.double({ min: 1, max: 1000, noNaN: true, noDefaultInfinity: true }),
    );
    const tickArb: fc.Arbitrary<Message> = fc
      .record({
        open: price,
        close: price,
        up: fc.double({ min: 0, max: 5, noNaN: true }),
        down: fc.double({ min: 0, max: 0.5, noNaN: true }),
        volume: fc.oneof(fc.nat({ max: 1_000_000 }), fc.constant(-0)),
        dt: fc.double({ min: 0, max: 120, noNaN: true }),
      })
      .map(r => ({
        stock_symbol: "AAPL",
        opening_price: r.open,
        closing_price: r.close,
        high: Math.max(r.open, r.close) + r.up,
        low: Math.min(r.open, r.close) * (1 - r.down),
        volume: r.volume,
        timestamp: T0 + r.dt,
      }));
    const sideArb: fc.Arbitrary<Message> = fc.oneof(
      fc
        .record({
          side: fc.constantFrom("buy" as const, "sell" as const),
          price,
          quantity: fc.integer({ min: 1, max: 1e6 }),
        })
        .map(r => orderBook("AAPL", r.side, r.price, r.quantity)),
      fc
        .record({
          score: fc.oneof(fc.constant(-0), fc.double({ min: -1, max: 1, noNaN: true })),
          magnitude: fc.double({ min: 0, max: 10, noNaN: true }),
        })
        .map((r): Message => ({
          data_type: "news_sentiment",
          stock_symbol: "AAPL",
          sentiment_score: r.score,
          sentiment_magnitude: r.magnitude,
          timestamp: T0,
        })),
      fc
        .record({
          cap: price,
          pe: fc.oneof(fc.constant(-0), fc.double({ min: -100, max: 100, noNaN: true })),
        })
        .map((r): Message => ({
          data_type: "market_data",
          stock_symbol: "AAPL",
          market_cap: r.cap,
          pe_ratio: r.pe,
          timestamp: T0,
        })),
    );
    const settingsArb: fc.Arbitrary<IndicatorSettings> = fc.record({
      smaPeriod: fc.integer({ min: 1, max: 8 }),
      emaPeriod: fc.integer({ min: 1, max: 8 }),
      rsiPeriod: fc.integer({ min: 1, max: 8 }),
      rsiOversold: fc.integer({ min: 5, max: 49 }),
      rsiOverbought: fc.integer({ min: 51, max: 95 }),
    });
    /** Messages at strictly increasing offsets with gaps, as a partition shared with other symbols gives them. */
    const logArb = fc
      .array(
        fc.tuple(
          fc.oneof({ weight: 4, arbitrary: tickArb }, { weight: 1, arbitrary: sideArb }),
          fc.integer({ min: 1, max: 3 }),
        ),
        {
          maxLength: 80,
        },
      )
      .map(rows => {
        let offset = -1;
        return rows.map(([message, gap]) => ({ message, offset: (offset += gap) }));
      });

    const run = (actor: SymbolActor, log: readonly { message: Message; offset: number }[]) =>
      log.map(({ message, offset }) => actor.apply(message, offset));

    it("snapshot at any point, through JSON, restore, replay from any earlier commit: identical to an uninterrupted run", () => {
      fc.assert(
        fc.property(settingsArb, logArb, fc.nat(), fc.nat(), (settings, log, cutSeed, commitSeed) => {
          const cut = cutSeed % (log.length + 1);
          const commit = commitSeed % (cut + 1);

          const straight = new SymbolActor("AAPL", settings);
          const expected = run(straight, log);

          const first = new SymbolActor("AAPL", settings);
          const before = run(first, log.slice(0, cut));
          const stored = JSON.stringify(first.snapshot());
          const second = SymbolActor.restore(JSON.parse(stored), settings);
          // Kafka redelivers from the last committed offset, which may precede the snapshot.
          const replayed = run(second, log.slice(commit));

          expect(replayed.slice(0, cut - commit).every(o => o === null)).toBe(true);
          const combined: (ActorOutput | null)[] = [...before, ...replayed.slice(cut - commit)];
          expect(combined).toStrictEqual(expected);
          expect(JSON.stringify(combined)).toBe(JSON.stringify(expected));
          expect(JSON.stringify(second.snapshot())).toBe(JSON.stringify(straight.snapshot()));
          expect(second.view()).toStrictEqual(straight.view());
        }),
        { numRuns: 200 },
      );
    });

    it("a snapshot survives JSON unchanged, so a restored actor's snapshot is the same document", () => {
      fc.assert(
        fc.property(settingsArb, logArb, (settings, log) => {
          const actor = new SymbolActor("AAPL", settings);
          run(actor, log);
          const snapshot = actor.snapshot();
          expect(viaJson(snapshot)).toStrictEqual(snapshot);
          expect(SymbolActor.restore(viaJson(snapshot), settings).snapshot()).toStrictEqual(snapshot);
        }),
      );
    });
  });
});

describe("SymbolActor.resettle: continuing a symbol under other indicator settings", () => {
  const OTHER: IndicatorSettings = {
    smaPeriod: 5,
    emaPeriod: 4,
    rsiPeriod: 3,
    rsiOversold: 25,
    rsiOverbought: 75,
  };

  function stream(): Message[] {
    const random = seededRandom(83);
    const ticks = ticksFromCloses(random, "AAPL", randomWalk(random, 400, 100, 0.06));
    const out: Message[] = [];
    ticks.forEach((t, i) => {
      out.push(t);
      if (i % 37 === 0) out.push(orderBook("AAPL", i % 2 ? "buy" : "sell", t.closing_price, 10 + i));
    });
    return out;
  }

  function run(actor: SymbolActor, messages: Message[], from = 0): ActorOutput[] {
    return messages.map((m, i) => actor.apply(m, from + i)!);
  }

  it("refuses to restore a snapshot taken under other settings, naming the difference", () => {
    const actor = new SymbolActor("AAPL", SETTINGS);
    run(actor, stream().slice(0, 50));
    expect(() => SymbolActor.restore(actor.snapshot(), OTHER)).toThrow(SettingsChangedError);
    expect(() => SymbolActor.restore(actor.snapshot(), OTHER)).toThrow(
      /smaPeriod 20 in the snapshot, 5 configured/,
    );
  });

  it("is the actor that always ran with the new settings, and continues identically", () => {
    const messages = stream();
    const cut = 250;
    const old = new SymbolActor("AAPL", SETTINGS);
    const stored = run(old, messages.slice(0, cut))
      .filter(o => o.kind === "tick")
      .map(
        o =>
          (o.kind === "tick" ? { seq: o.tick.seq, close: o.tick.close, timestamp: o.tick.timestamp } : null)!,
      );
    const reference = new SymbolActor("AAPL", OTHER);
    run(reference, messages.slice(0, cut));

    const resettled = SymbolActor.resettle(viaJson(old.snapshot()), OTHER, stored);
    expect(resettled.snapshot()).toEqual(reference.snapshot());
    expect(resettled.view().lastSignal).not.toBeNull();
    expect(run(resettled, messages.slice(cut), cut)).toEqual(run(reference, messages.slice(cut), cut));
    expect(resettled.snapshot()).toEqual(reference.snapshot());
  });

  it("refuses ticks that are not the snapshot's", () => {
    const old = new SymbolActor("AAPL", SETTINGS);
    const outputs = run(old, stream().slice(0, 60));
    const stored = outputs.flatMap(o =>
      o.kind === "tick" ? [{ seq: o.tick.seq, close: o.tick.close, timestamp: o.tick.timestamp }] : [],
    );
    const snapshot = old.snapshot();
    expect(() => SymbolActor.resettle(snapshot, OTHER, stored.slice(1))).toThrow(IncompatibleSnapshotError);
    const gap = [...stored.slice(0, 10), ...stored.slice(11), stored[stored.length - 1]];
    expect(() => SymbolActor.resettle(snapshot, OTHER, gap)).toThrow(/stored tick 11/);
    const otherEnd = stored.map((t, i) => (i === stored.length - 1 ? { ...t, close: t.close + 1 } : t));
    expect(() => SymbolActor.resettle(snapshot, OTHER, otherEnd)).toThrow(/end at close/);
  });
});

describe("recomputeIndicators", () => {
  it("gives every stored tick the indicators and signals an actor with those settings produces", () => {
    const settings: IndicatorSettings = {
      smaPeriod: 7,
      emaPeriod: 5,
      rsiPeriod: 4,
      rsiOversold: 35,
      rsiOverbought: 65,
    };
    const random = seededRandom(97);
    const ticks = ticksFromCloses(random, "MSFT", randomWalk(random, 500, 50, 0.05));
    const actor = new SymbolActor("MSFT", settings);
    const outputs = ticks.map((t, i) => actor.apply(t, i)!).flatMap(o => (o.kind === "tick" ? [o] : []));
    const stored = outputs.map(o => ({ seq: o.tick.seq, close: o.tick.close, timestamp: o.tick.timestamp }));

    const recomputed = recomputeIndicators("MSFT", stored, settings);
    expect(recomputed.ticks).toEqual(
      outputs.map(o => ({ seq: o.tick.seq, sma: o.tick.sma, ema: o.tick.ema, rsi: o.tick.rsi })),
    );
    const signals = outputs.flatMap(o => (o.signal ? [o.signal] : []));
    expect(signals.length).toBeGreaterThan(3);
    expect(recomputed.signals).toEqual(signals);
  });
});
