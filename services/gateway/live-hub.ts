import type { Server } from "node:http";
import { performance } from "node:perf_hooks";
import { WebSocket, WebSocketServer } from "ws";
import type { TickResult } from "../../domain/symbol-actor";
import type { SignalNotification } from "../contracts";

/** A client that has this much unsent data is skipped until it catches up: a slow browser must not grow memory. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

interface Client {
  socket: WebSocket;
  /** Symbols the client asked for (`/ws?symbols=AAPL,MSFT`); null means all. */
  symbols: Set<string> | null;
}

/**
 * Live updates over WebSocket at `/ws`. Ticks are coalesced to the newest per symbol: the first
 * tick after a quiet spell goes out on the next turn of the event loop (with whatever else the
 * same turn published), and after that at most one `ticks` message leaves every `minIntervalMs`,
 * carrying the newest tick of each symbol that moved meanwhile. A dashboard needs the current
 * value soon, not every tick: a busy market costs a browser at most 1000 / minIntervalMs
 * messages a second, a quiet one no waiting. Signal notifications are sent at once. Messages:
 * `{type: "ticks", ticks: [...]}` and `{type: "signal", signal, message}`.
 */
export class LiveHub {
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<Client>();
  private pending = new Map<string, TickResult>();
  /** Cancels the next flush, while one is due: at most one is scheduled at a time. */
  private cancelFlush: (() => void) | null = null;
  /** performance.now() of the last flush that sent ticks; the next waits until minIntervalMs after it. */
  private lastFlushAt = -Infinity;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    server: Server,
    private readonly onClients: (count: number) => void = () => undefined,
    private readonly minIntervalMs = 50,
    heartbeatMs = 15000,
  ) {
    this.wss = new WebSocketServer({ server, path: "/ws", maxPayload: 64 * 1024 });
    this.wss.on("connection", (socket, req) => {
      const wanted = new URL(req.url ?? "/ws", "http://localhost").searchParams.get("symbols");
      const client: Client = {
        socket,
        symbols: wanted
          ? new Set(
              wanted
                .split(",")
                .map(s => s.trim())
                .filter(Boolean),
            )
          : null,
      };
      this.clients.add(client);
      this.onClients(this.clients.size);
      socket.on("message", data => this.onMessage(client, data.toString()));
      socket.on("close", () => {
        this.clients.delete(client);
        this.onClients(this.clients.size);
      });
      socket.on("error", () => socket.terminate());
      socket.send(JSON.stringify({ type: "hello", symbols: client.symbols ? [...client.symbols] : "all" }));
    });
    // A quiet market is not a dead connection: browsers learn the difference from this beat
    // (a proxy that silently dropped the socket stops it).
    this.heartbeat = setInterval(() => {
      const beat = JSON.stringify({ type: "heartbeat", at: Date.now() });
      for (const c of this.clients) this.send(c, beat);
    }, heartbeatMs);
    this.heartbeat.unref();
  }

  /** Clients may change their subscription: `{"subscribe": ["AAPL"]}` or `{"subscribe": "all"}`. */
  private onMessage(client: Client, text: string): void {
    try {
      const msg = JSON.parse(text) as { subscribe?: unknown };
      if (msg.subscribe === "all") client.symbols = null;
      else if (Array.isArray(msg.subscribe)) client.symbols = new Set(msg.subscribe.map(String));
    } catch {
      // Not JSON: nothing a client can ask for that way.
    }
  }

  get clientCount(): number {
    return this.clients.size;
  }

  publishTicks(ticks: TickResult[]): void {
    if (this.clients.size === 0) return;
    for (const t of ticks) {
      const known = this.pending.get(t.symbol);
      if (!known || known.seq < t.seq) this.pending.set(t.symbol, t);
    }
    if (this.pending.size > 0) this.scheduleFlush();
  }

  /**
   * setImmediate rather than an immediate send: the ticks published in the same turn (one batch's
   * `stock.analysed`, several partitions' at once) leave as one message.
   */
  private scheduleFlush(): void {
    if (this.cancelFlush) return;
    const wait = this.lastFlushAt + this.minIntervalMs - performance.now();
    const run = () => {
      this.cancelFlush = null;
      this.flush();
    };
    if (wait > 0) {
      const timer = setTimeout(run, wait).unref();
      this.cancelFlush = () => clearTimeout(timer);
    } else {
      // Not unref'd: an unref'd immediate does not keep the loop from blocking in its poll for I/O,
      // so it would wait for the next unrelated timer or packet.
      const immediate = setImmediate(run);
      this.cancelFlush = () => clearImmediate(immediate);
    }
  }

  publishSignal(notification: SignalNotification): void {
    const payload = JSON.stringify({ type: "signal", ...notification });
    for (const c of this.clients) {
      if (c.symbols && !c.symbols.has(notification.signal.symbol)) continue;
      this.send(c, payload);
    }
  }

  private flush(): void {
    if (this.pending.size === 0) return;
    // A timer may fire a fraction of a millisecond early: the interval is kept by this clock.
    if (performance.now() - this.lastFlushAt < this.minIntervalMs) {
      this.scheduleFlush();
      return;
    }
    this.lastFlushAt = performance.now();
    const ticks = [...this.pending.values()];
    this.pending = new Map();
    let all: string | null = null;
    for (const c of this.clients) {
      if (!c.symbols) {
        all ??= JSON.stringify({ type: "ticks", ticks });
        this.send(c, all);
        continue;
      }
      const mine = ticks.filter(t => c.symbols!.has(t.symbol));
      if (mine.length > 0) this.send(c, JSON.stringify({ type: "ticks", ticks: mine }));
    }
  }

  private send(c: Client, payload: string): void {
    if (c.socket.readyState === WebSocket.OPEN && c.socket.bufferedAmount < MAX_BUFFERED_BYTES)
      c.socket.send(payload);
  }

  close(): Promise<void> {
    this.cancelFlush?.();
    this.cancelFlush = null;
    this.pending = new Map();
    clearInterval(this.heartbeat);
    for (const c of this.clients) c.socket.terminate();
    this.clients.clear();
    return new Promise(resolve => this.wss.close(() => resolve()));
  }
}
