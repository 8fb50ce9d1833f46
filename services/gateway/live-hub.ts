import type { Server } from "node:http";
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
 * Live updates over WebSocket at `/ws`. Ticks are coalesced to the newest per symbol and sent
 * at most every `flushMs` (a dashboard needs the current value, not every tick); signal
 * notifications are sent at once. Messages: `{type: "ticks", ticks: [...]}` and
 * `{type: "signal", signal, message}`.
 */
export class LiveHub {
  private readonly wss: WebSocketServer;
  private readonly clients = new Set<Client>();
  private pending = new Map<string, TickResult>();
  private readonly timer: NodeJS.Timeout;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    server: Server,
    private readonly onClients: (count: number) => void = () => undefined,
    flushMs = 250,
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
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
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
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    for (const c of this.clients) c.socket.terminate();
    this.clients.clear();
    return new Promise(resolve => this.wss.close(() => resolve()));
  }
}
