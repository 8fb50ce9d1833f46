import { createMessageSource, syntheticSymbols } from "../../../generator/models";
import type { PriceTick } from "../../../domain/messages";
import { SymbolActor, type ActorView, type IndicatorSettings } from "../../../domain/symbol-actor";
import { AppProcess, startOnFreePorts } from "../../support/processes";
import { STACK, waitFor } from "../../support/stack";

export const DEFAULT_SETTINGS: IndicatorSettings = {
  smaPeriod: 20,
  emaPeriod: 20,
  rsiPeriod: 14,
  rsiOversold: 30,
  rsiOverbought: 70,
};

/** Deterministic walk-model ticks (signals appear), with event times one centisecond apart. */
export function makeTicks(count: number, symbolCount: number, seed: string): PriceTick[] {
  let t = 1_764_000_000;
  const source = createMessageSource({
    symbols: syntheticSymbols(symbolCount),
    model: "walk",
    seed,
    now: () => (t += 0.01),
  });
  return Array.from({ length: count }, () => source.nextPrice());
}

export interface IndicatorRow {
  symbol: string;
  seq: number;
  sma: number | null;
  ema: number | null;
  rsi: number | null;
}

export interface ReferenceRun {
  actors: Map<string, SymbolActor>;
  /** Every tick's indicators, ordered by symbol then seq (the order of `ORDER BY symbol, seq`). */
  rows: IndicatorRow[];
  signals: number;
}

/** What a single uninterrupted actor per symbol computes over the same per-symbol order. */
export function referenceRun(ticks: PriceTick[], settings = DEFAULT_SETTINGS): ReferenceRun {
  const actors = new Map<string, SymbolActor>();
  const rows: IndicatorRow[] = [];
  let signals = 0;
  ticks.forEach((tick, i) => {
    let actor = actors.get(tick.stock_symbol);
    if (!actor) actors.set(tick.stock_symbol, (actor = new SymbolActor(tick.stock_symbol, settings)));
    const out = actor.apply(tick, i);
    if (out?.kind !== "tick") return;
    const { symbol, seq, sma, ema, rsi } = out.tick;
    rows.push({ symbol, seq, sma, ema, rsi });
    if (out.signal) signals += 1;
  });
  // Code-unit order, like the C collation the test databases sort text with.
  rows.sort((a, b) => (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : a.seq - b.seq));
  return { actors, rows, signals };
}

/** A view without what depends on where messages sat in the log (offsets differ from the reference's). */
export function comparableView(view: ActorView): unknown {
  const { lastOffset: _lastOffset, lastTick, ...rest } = view;
  if (!lastTick) return { ...rest, lastTick };
  const { offset: _offset, ...tick } = lastTick;
  return { ...rest, lastTick: tick };
}

export interface ClusterEnv {
  topic: string;
  groupId: string;
  namespace: string;
  databaseUrl: string;
  partitions: number;
}

export function nodeEnv(c: ClusterEnv, nodeID: string, services: string, extra: Record<string, string> = {}) {
  return {
    NODE_ID: nodeID,
    SERVICES: services,
    NAMESPACE: c.namespace,
    NATS_URL: STACK.natsUrl,
    KAFKA_BROKERS: STACK.kafkaBrokers,
    KAFKA_TOPIC: c.topic,
    KAFKA_GROUP_ID: c.groupId,
    KAFKA_PARTITIONS: String(c.partitions),
    KAFKA_SESSION_TIMEOUT_MS: "6000",
    // The shared broker of a loaded machine can take seconds to acknowledge a produce; the default
    // 5 s ack timeout would turn that into a 503 these tests are not about.
    KAFKA_ACK_TIMEOUT_MS: "30000",
    DATABASE_URL: c.databaseUrl,
    REDIS_URL: STACK.redisUrl,
    METRICS_PORT: "0",
    DEMO_FEED: "0",
    LOG_LEVEL: "info",
    ...extra,
  };
}

const STARTED = /ServiceBroker with \d+ service\(s\) started successfully/;

/** Generous: several node processes start at once on a loaded 2-core machine. */
const START_TIMEOUT_MS = 120000;

export async function startNode(name: string, env: Record<string, string>): Promise<AppProcess> {
  const p = new AppProcess(name, env).start();
  await p.waitForLine(STARTED, START_TIMEOUT_MS);
  return p;
}

/**
 * A node that listens on ports of its own (PORT, METRICS_PORT), picked just before it starts; a
 * start that lost a port to another process in between is retried on fresh ones.
 */
export async function startNodeOnFreePorts<K extends string>(
  name: string,
  portNames: readonly K[],
  env: (ports: Record<K, number>) => Record<string, string>,
): Promise<{ process: AppProcess; ports: Record<K, number> }> {
  return startOnFreePorts(name, portNames, env, p => p.waitForLine(STARTED, START_TIMEOUT_MS));
}

export interface ClusterView {
  actors: { nodeID: string; partitions: number[]; actors: number }[];
  partitions: { partition: number; nodeID: string }[];
  partitionCount: number | null;
}

export async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(30000) });
  return { status: res.status, body: (await res.json()) as T };
}

/** Waits until exactly `nodes` own all partitions between them, each owned once. */
export function waitForOwnership(base: string, nodes: string[], partitions: number, timeoutMs = 60000) {
  const wanted = [...nodes].sort().join(",");
  return waitFor(
    `partitions owned by exactly ${wanted}`,
    async () => {
      const { body } = await getJson<ClusterView>(`${base}/api/cluster`);
      const owners = body.actors.filter(a => a.partitions.length > 0).map(a => a.nodeID);
      const owned = body.actors.flatMap(a => a.partitions).sort((x, y) => x - y);
      const complete = owned.length === partitions && owned.every((p, i) => p === i);
      return complete && [...owners].sort().join(",") === wanted ? body : null;
    },
    timeoutMs,
    250,
  );
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(60000),
  });
  return { status: res.status, text: await res.text() };
}
