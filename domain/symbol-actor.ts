import { StockError } from "./errors";
import { RunningAggregates, RunningAggregatesState, RunningAggregateView } from "./aggregates";
import { requireFinite } from "./compensated-sum";
import { EMA, EmaState } from "./indicators/ema";
import { RSI, RsiState } from "./indicators/rsi";
import { SMA, SmaState } from "./indicators/sma";
import { isPriceTick, PriceTick, SymbolSideData } from "./messages";
import { applySideData, copySideData, emptySideData, SideDataState } from "./side-data";
import { SignalDetector, SignalDetectorState, SignalSide } from "./signals";

export interface IndicatorSettings {
  smaPeriod: number;
  emaPeriod: number;
  rsiPeriod: number;
  rsiOversold: number;
  rsiOverbought: number;
}

/** One analysed price tick: the row(s) the results table stores, keyed by (symbol, seq). */
export interface TickResult {
  symbol: string;
  /** Per-symbol sequence number of price ticks, from 1. */
  seq: number;
  /** The Kafka offset the tick came from. */
  offset: number;
  /** Event time, epoch seconds, as the tick carried it. */
  timestamp: number;
  open: number;
  close: number;
  high: number;
  low: number;
  volume: number;
  sma: number | null;
  ema: number | null;
  rsi: number | null;
}

export interface Signal {
  symbol: string;
  side: SignalSide;
  rsi: number;
  /** The closing price of the tick that emitted the signal. */
  price: number;
  timestamp: number;
  seq: number;
}

export interface SideDataRecord {
  symbol: string;
  kind: "order_book" | "news_sentiment" | "market_data";
  /** Per-symbol sequence number of side data, from 1, counted apart from price ticks. */
  sideSeq: number;
  offset: number;
  timestamp: number;
  payload: SymbolSideData;
}

export type ActorOutput =
  { kind: "tick"; tick: TickResult; signal: Signal | null } | { kind: "side"; side: SideDataRecord };

/** The last applied price tick, without the indicators (the view shows their current values beside it). */
export interface LastTick {
  seq: number;
  offset: number;
  timestamp: number;
  open: number;
  close: number;
  high: number;
  low: number;
  volume: number;
}

/** The live state of one symbol as the REST API and the REPL show it. Plain JSON. */
export interface ActorView {
  symbol: string;
  seq: number;
  sideSeq: number;
  lastOffset: number;
  lastTick: LastTick | null;
  sma: number | null;
  ema: number | null;
  rsi: number | null;
  aggregates: RunningAggregateView;
  sideData: SideDataState;
  lastSignal: Signal | null;
  settings: IndicatorSettings;
}

/**
 * The snapshot format. It changes only for a snapshot this build could not continue exactly; a field added
 * since is optional, and its absence in an older snapshot reads as the value that snapshot implies (e.g.
 * `aggregates.totalVolumeCompensation`: 0, its volume sum having been a plain sum), so older snapshots still
 * restore and their actors continue bit-identically.
 */
export const SNAPSHOT_VERSION = 1;

/**
 * Everything an actor needs to continue exactly where it stopped. Only finite numbers, strings and nulls, so
 * `JSON.parse(JSON.stringify(s))` gives back the same state bit for bit (JSON numbers round-trip doubles).
 */
export interface ActorSnapshot {
  v: typeof SNAPSHOT_VERSION;
  symbol: string;
  /** The configuration the state was computed under: windows of another period cannot be continued. */
  settings: IndicatorSettings;
  seq: number;
  sideSeq: number;
  lastOffset: number;
  lastTick: LastTick | null;
  sma: SmaState;
  ema: EmaState;
  rsi: RsiState;
  signals: SignalDetectorState;
  aggregates: RunningAggregatesState;
  sideData: SideDataState;
  lastSignal: Signal | null;
}

/**
 * A snapshot this build cannot continue from: an unknown version, other indicator settings, or a damaged
 * document. Not retriable: the same snapshot fails the same way, so the caller must rebuild the state by
 * replaying the symbol's partition instead.
 */
export class IncompatibleSnapshotError extends StockError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { retriable: false, cause: options.cause });
  }
}

/**
 * A snapshot taken under other indicator settings than the configured ones. Its windows cannot be
 * continued, but everything else can: `SymbolActor.resettle` recomputes the indicators from the
 * symbol's stored ticks.
 */
export class SettingsChangedError extends IncompatibleSnapshotError {}

/** One stored price tick, as much as the indicators are computed from. */
export interface StoredTick {
  seq: number;
  close: number;
  /** Epoch seconds. */
  timestamp: number;
}

const SETTING_KEYS = ["smaPeriod", "emaPeriod", "rsiPeriod", "rsiOversold", "rsiOverbought"] as const;

/**
 * One stock symbol's whole state (docs/architecture.md, "The actor model"): indicator windows, Wilder averages,
 * signal edge state, running aggregates, latest side data, sequence numbers and the last applied Kafka offset.
 *
 * `apply` is deterministic: the same messages at the same offsets give bit-identical outputs and state on any
 * node, with or without a snapshot/restore in between. That is what makes replay after a crash or a rebalance
 * safe. Messages are expected to have passed `parseMessage` (finite numbers, positive prices).
 */
export class SymbolActor {
  readonly symbol: string;
  private readonly settings: IndicatorSettings;
  private sma: SMA;
  private ema: EMA;
  private rsi: RSI;
  private signals: SignalDetector;
  private aggregates = new RunningAggregates();
  private sideData: SideDataState = emptySideData();
  private lastSignal: Signal | null = null;
  private _seq = 0;
  private _sideSeq = 0;
  private _lastOffset = -1;
  // The last tick as separate number fields, not the emitted TickResult: callers own what apply returns.
  private lastTickOffset = 0;
  private lastTimestamp = 0;
  private lastOpen = 0;
  private lastClose = 0;
  private lastHigh = 0;
  private lastLow = 0;
  private lastVolume = 0;

  constructor(symbol: string, settings: IndicatorSettings) {
    if (typeof symbol !== "string" || symbol.length === 0) {
      throw new RangeError("an actor needs a non-empty symbol");
    }
    this.symbol = symbol;
    this.settings = Object.freeze(pickSettings(settings));
    this.sma = new SMA(settings.smaPeriod);
    this.ema = new EMA(settings.emaPeriod);
    this.rsi = new RSI(settings.rsiPeriod);
    this.signals = new SignalDetector(settings.rsiOversold, settings.rsiOverbought);
  }

  /** Price ticks applied so far; also the `seq` of the last one. */
  get seq(): number {
    return this._seq;
  }

  /** The symbol's total volume to the unit, as a decimal string (the exact value of `aggregates.total_volume`). */
  totalVolumeExact(): string {
    return this.aggregates.totalVolumeExact();
  }

  /** Side-data messages applied so far. */
  get sideSeq(): number {
    return this._sideSeq;
  }

  /** Offset of the last applied message of either kind; -1 before the first. */
  get lastOffset(): number {
    return this._lastOffset;
  }

  /**
   * The symbol's messages come from another partition from now on (the partition count changed):
   * offsets there are a sequence of their own, so none of them counts as applied yet. Everything
   * else (sequence numbers, windows, aggregates) carries on.
   */
  movedPartition(): void {
    this._lastOffset = -1;
  }

  /**
   * The message at `offset` is a second copy of one already applied (a client's retried request):
   * nothing changes but the offset, so that a replay of the log decides the same way.
   */
  skipDuplicate(offset: number): void {
    if (offset > this._lastOffset) this._lastOffset = offset;
  }

  /**
   * Applies the message read at `offset`. Returns `null`, changing nothing, when the offset was already applied:
   * after a restore, the partition is replayed from the last committed offset, which may lie before the snapshot.
   */
  apply(message: PriceTick | SymbolSideData, offset: number): ActorOutput | null {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`offset must be a non-negative whole number, got ${offset}`);
    }
    if (message.stock_symbol !== this.symbol) {
      throw new RangeError(
        `actor ${this.symbol} was given a message for ${message.stock_symbol} (offset ${offset})`,
      );
    }
    if (offset <= this._lastOffset) {
      return null;
    }
    this._lastOffset = offset;
    return isPriceTick(message) ? this.applyTick(message, offset) : this.applySide(message, offset);
  }

  /**
   * Whether every running number of the state is still finite. Input within the ingest bounds keeps
   * it so over 2^32 ticks; a message after which it is not must not be applied: a snapshot can hold
   * only finite numbers, and its results could not be stored.
   */
  isFinite(): boolean {
    return this.aggregates.isFinite() && this.sma.isFinite() && this.ema.isFinite() && this.rsi.isFinite();
  }

  view(): ActorView {
    return {
      symbol: this.symbol,
      seq: this._seq,
      sideSeq: this._sideSeq,
      lastOffset: this._lastOffset,
      lastTick: this.lastTick(),
      sma: this.sma.value,
      ema: this.ema.value,
      rsi: this.rsi.value,
      aggregates: this.aggregates.view(),
      sideData: copySideData(this.sideData),
      lastSignal: this.lastSignal === null ? null : { ...this.lastSignal },
      settings: { ...this.settings },
    };
  }

  snapshot(): ActorSnapshot {
    return {
      v: SNAPSHOT_VERSION,
      symbol: this.symbol,
      settings: { ...this.settings },
      seq: this._seq,
      sideSeq: this._sideSeq,
      lastOffset: this._lastOffset,
      lastTick: this.lastTick(),
      sma: this.sma.snapshot(),
      ema: this.ema.snapshot(),
      rsi: this.rsi.snapshot(),
      signals: this.signals.snapshot(),
      aggregates: this.aggregates.snapshot(),
      sideData: copySideData(this.sideData),
      lastSignal: this.lastSignal === null ? null : { ...this.lastSignal },
    };
  }

  /**
   * Rebuilds an actor from `snapshot`, which must have been taken under the same `settings`: a window of another
   * period, or a signal state under other thresholds, cannot be continued, only recomputed from the ticks.
   */
  static restore(snapshot: ActorSnapshot, settings: IndicatorSettings): SymbolActor {
    if (typeof snapshot !== "object" || snapshot === null) {
      throw new IncompatibleSnapshotError(`a snapshot must be an object, got ${JSON.stringify(snapshot)}`);
    }
    const symbol = snapshot.symbol;
    if (snapshot.v !== SNAPSHOT_VERSION) {
      throw new IncompatibleSnapshotError(
        `snapshot of ${symbol} has version ${JSON.stringify(snapshot.v)}; this build reads version ${SNAPSHOT_VERSION}`,
      );
    }
    const taken: Partial<IndicatorSettings> = snapshot.settings ?? {};
    const differences = SETTING_KEYS.filter(k => taken[k] !== settings[k]).map(
      k => `${k} ${taken[k]} in the snapshot, ${settings[k]} configured`,
    );
    if (differences.length > 0) {
      throw new SettingsChangedError(
        `snapshot of ${symbol} was taken with other indicator settings (${differences.join("; ")})`,
      );
    }
    try {
      const actor = new SymbolActor(symbol, settings);
      actor.sma = SMA.restore(snapshot.sma, settings.smaPeriod);
      actor.ema = EMA.restore(snapshot.ema, settings.emaPeriod);
      actor.rsi = RSI.restore(snapshot.rsi, settings.rsiPeriod);
      actor.signals = SignalDetector.restore(snapshot.signals, settings.rsiOversold, settings.rsiOverbought);
      actor.aggregates = RunningAggregates.restore(snapshot.aggregates);
      actor.sideData = copySideData(snapshot.sideData);
      actor.lastSignal = snapshot.lastSignal === null ? null : copySignal(snapshot.lastSignal);
      actor._seq = requireFinite(snapshot.seq, "seq");
      actor._sideSeq = requireFinite(snapshot.sideSeq, "sideSeq");
      actor._lastOffset = requireFinite(snapshot.lastOffset, "lastOffset");
      const t = snapshot.lastTick;
      if ((t === null) !== (actor._seq === 0)) {
        throw new TypeError(`lastTick must be present exactly when seq > 0 (seq ${actor._seq})`);
      }
      if (t !== null) {
        actor.lastTickOffset = requireFinite(t.offset, "lastTick.offset");
        actor.lastTimestamp = requireFinite(t.timestamp, "lastTick.timestamp");
        actor.lastOpen = requireFinite(t.open, "lastTick.open");
        actor.lastClose = requireFinite(t.close, "lastTick.close");
        actor.lastHigh = requireFinite(t.high, "lastTick.high");
        actor.lastLow = requireFinite(t.low, "lastTick.low");
        actor.lastVolume = requireFinite(t.volume, "lastTick.volume");
      }
      return actor;
    } catch (err) {
      throw new IncompatibleSnapshotError(`snapshot of ${symbol} is damaged: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * Continues a symbol under other indicator settings. Sequence numbers, offsets, aggregates, side
   * data and the last tick come from `snapshot`; SMA, EMA, RSI, the signal edge and the last signal
   * are recomputed under `settings` from the symbol's stored ticks (every one, in `seq` order), so
   * the actor continues exactly as one that always ran with these settings would. The ticks must be
   * the snapshot's: seq 1 to `snapshot.seq`, ending with its last close.
   */
  static resettle(
    snapshot: ActorSnapshot,
    settings: IndicatorSettings,
    ticks: readonly StoredTick[],
  ): SymbolActor {
    const fresh = new SymbolActor(snapshot.symbol, settings);
    const actor = SymbolActor.restore(
      {
        ...snapshot,
        settings: pickSettings(settings),
        sma: fresh.sma.snapshot(),
        ema: fresh.ema.snapshot(),
        rsi: fresh.rsi.snapshot(),
        signals: fresh.signals.snapshot(),
        lastSignal: null,
      },
      settings,
    );
    if (ticks.length !== actor._seq) {
      throw new IncompatibleSnapshotError(
        `cannot recompute ${actor.symbol}'s indicators: its snapshot has ${actor._seq} ticks, ${ticks.length} were given`,
      );
    }
    ticks.forEach((t, i) => {
      if (t.seq !== i + 1 || !Number.isFinite(t.close)) {
        throw new IncompatibleSnapshotError(
          `cannot recompute ${actor.symbol}'s indicators: stored tick ${i + 1} is ${JSON.stringify(t)}`,
        );
      }
      const rsi = actor.rsi.update(t.close);
      actor.sma.update(t.close);
      actor.ema.update(t.close);
      if (rsi === null) return;
      const side = actor.signals.update(rsi);
      if (side !== null) {
        actor.lastSignal = {
          symbol: actor.symbol,
          side,
          rsi,
          price: t.close,
          timestamp: t.timestamp,
          seq: t.seq,
        };
      }
    });
    if (ticks.length > 0 && ticks[ticks.length - 1].close !== actor.lastClose) {
      throw new IncompatibleSnapshotError(
        `cannot recompute ${actor.symbol}'s indicators: its stored ticks end at close ${ticks[ticks.length - 1].close}, its snapshot at ${actor.lastClose}`,
      );
    }
    return actor;
  }

  private applyTick(tick: PriceTick, offset: number): ActorOutput {
    const seq = ++this._seq;
    const close = tick.closing_price;
    const rsi = this.rsi.update(close);
    const result: TickResult = {
      symbol: this.symbol,
      seq,
      offset,
      timestamp: tick.timestamp,
      open: tick.opening_price,
      close,
      high: tick.high,
      low: tick.low,
      // A volume of -0 is valid input; JSON would turn it into 0 and break bit-identical replay.
      volume: tick.volume + 0,
      sma: this.sma.update(close),
      ema: this.ema.update(close),
      rsi,
    };
    this.aggregates.add(result);
    this.lastTickOffset = offset;
    this.lastTimestamp = result.timestamp;
    this.lastOpen = result.open;
    this.lastClose = close;
    this.lastHigh = result.high;
    this.lastLow = result.low;
    this.lastVolume = result.volume;
    let signal: Signal | null = null;
    if (rsi !== null) {
      const side = this.signals.update(rsi);
      if (side !== null) {
        signal = { symbol: this.symbol, side, rsi, price: close, timestamp: result.timestamp, seq };
        this.lastSignal = { ...signal };
      }
    }
    return { kind: "tick", tick: result, signal };
  }

  private applySide(message: SymbolSideData, offset: number): ActorOutput {
    const sideSeq = ++this._sideSeq;
    this.sideData = applySideData(this.sideData, message);
    return {
      kind: "side",
      side: {
        symbol: this.symbol,
        kind: message.data_type,
        sideSeq,
        offset,
        timestamp: message.timestamp,
        payload: message,
      },
    };
  }

  private lastTick(): LastTick | null {
    if (this._seq === 0) {
      return null;
    }
    return {
      seq: this._seq,
      offset: this.lastTickOffset,
      timestamp: this.lastTimestamp,
      open: this.lastOpen,
      close: this.lastClose,
      high: this.lastHigh,
      low: this.lastLow,
      volume: this.lastVolume,
    };
  }
}

function pickSettings(s: IndicatorSettings): IndicatorSettings {
  return {
    smaPeriod: s.smaPeriod,
    emaPeriod: s.emaPeriod,
    rsiPeriod: s.rsiPeriod,
    rsiOversold: s.rsiOversold,
    rsiOverbought: s.rsiOverbought,
  };
}

function copySignal(s: Signal): Signal {
  if (s.side !== "buy" && s.side !== "sell") {
    throw new TypeError(`lastSignal.side must be "buy" or "sell", got ${JSON.stringify(s.side)}`);
  }
  return {
    symbol: String(s.symbol),
    side: s.side,
    rsi: requireFinite(s.rsi, "lastSignal.rsi"),
    price: requireFinite(s.price, "lastSignal.price"),
    timestamp: requireFinite(s.timestamp, "lastSignal.timestamp"),
    seq: requireFinite(s.seq, "lastSignal.seq"),
  };
}
