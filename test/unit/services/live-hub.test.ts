import http from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { WebSocket } from "ws";
import type { Signal, TickResult } from "../../../domain/symbol-actor";
import { LiveHub } from "../../../services/gateway/live-hub";

interface Message {
  type: string;
  ticks?: TickResult[];
  signal?: Signal;
  /** performance.now() when this process received it. */
  at: number;
}

const tick = (symbol: string, seq: number): TickResult => ({
  symbol,
  seq,
  offset: seq,
  timestamp: 1_700_000_000 + seq,
  open: 100,
  close: 100 + seq / 100,
  high: 101,
  low: 99,
  volume: 10,
  sma: null,
  ema: null,
  rsi: null,
});

/** A LiveHub on a loopback server, and WebSocket clients that keep every message they get. */
async function startHub(minIntervalMs?: number) {
  const server = http.createServer();
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const hub = new LiveHub(server, undefined, minIntervalMs);
  const { port } = server.address() as AddressInfo;
  const sockets: WebSocket[] = [];
  const connect = (query = "") =>
    new Promise<Message[] & { socket: WebSocket }>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws${query}`);
      const messages = Object.assign([] as Message[], { socket: ws });
      sockets.push(ws);
      ws.on("message", data => {
        const message = { ...(JSON.parse(data.toString()) as Message), at: performance.now() };
        messages.push(message);
        if (message.type === "hello") resolve(messages);
      });
      ws.on("error", reject);
    });
  const close = async () => {
    for (const ws of sockets) ws.terminate();
    await hub.close();
    await new Promise(resolve => server.close(resolve));
  };
  return { hub, connect, close };
}

/** Resolves once `messages` holds one that `probe` accepts; throws after 10 s (a hang detector, not a speed check). */
async function until(messages: Message[], what: string, probe: (m: Message) => boolean): Promise<Message> {
  for (const started = Date.now(); Date.now() - started < 10000;) {
    const found = messages.find(probe);
    if (found) return found;
    await new Promise(resolve => setTimeout(resolve, 2));
  }
  throw new Error(`${what}: not received in 10 s; got ${JSON.stringify(messages)}`);
}

const tickMessages = (messages: Message[]) => messages.filter(m => m.type === "ticks");
const seqsOf = (messages: Message[], symbol: string) =>
  tickMessages(messages).flatMap(m => m.ticks!.filter(t => t.symbol === symbol).map(t => t.seq));

describe("LiveHub: coalesced ticks over /ws", () => {
  it("sends what one turn published as one message: the newest tick per symbol", async () => {
    const { hub, connect, close } = await startHub();
    try {
      const all = await connect();
      const onlyB = await connect("?symbols=BBB");
      for (let seq = 1; seq <= 500; seq++) hub.publishTicks([tick("AAA", seq), tick("BBB", seq)]);
      // Out of order within the turn: an older tick never replaces a newer one.
      hub.publishTicks([tick("AAA", 7)]);
      await until(all, "ticks message", m => m.type === "ticks");
      await until(onlyB, "ticks message on the filtered client", m => m.type === "ticks");
      // A later tick of another symbol: whatever the hub sent in between would come before it.
      hub.publishTicks([tick("CCC", 1)]);
      await until(all, "CCC's tick", m => m.type === "ticks" && m.ticks!.some(t => t.symbol === "CCC"));

      expect(tickMessages(all).map(m => m.ticks!.map(t => [t.symbol, t.seq]))).toEqual([
        [
          ["AAA", 500],
          ["BBB", 500],
        ],
        [["CCC", 1]],
      ]);
      expect(tickMessages(onlyB).map(m => m.ticks!.map(t => [t.symbol, t.seq]))).toEqual([[["BBB", 500]]]);
    } finally {
      await close();
    }
  });

  it("sends the first tick after a quiet spell at once, whatever the interval", async () => {
    // An interval longer than this test may run: only a send that does not wait for it passes.
    const { hub, connect, close } = await startHub(10 * 60 * 1000);
    try {
      const messages = await connect();
      hub.publishTicks([tick("AAA", 1)]);
      const first = await until(messages, "the first tick", m => m.type === "ticks");
      expect(first.ticks!.map(t => t.seq)).toEqual([1]);
      // The next tick waits for the interval; a signal does not.
      hub.publishTicks([tick("AAA", 2)]);
      const signal: Signal = { symbol: "AAA", side: "buy", rsi: 25, price: 100, timestamp: 1, seq: 2 };
      hub.publishSignal({ signal, message: "BUY AAA" });
      await until(messages, "the signal", m => m.type === "signal");
      // A pong leaves the server after whatever it sent before it: the tick was held back.
      await new Promise(resolve => {
        messages.socket.once("pong", resolve);
        messages.socket.ping();
      });
      expect(seqsOf(messages, "AAA")).toEqual([1]);
    } finally {
      await close();
    }
  });

  it("sends at most one message per interval while ticks keep coming, the newest last", async () => {
    const interval = 50;
    const { hub, connect, close } = await startHub(interval);
    try {
      const messages = await connect();
      const started = performance.now();
      let seq = 0;
      // One tick every 2 ms for 400 ms: some 200 ticks, eight intervals.
      await new Promise<void>(resolve => {
        const timer = setInterval(() => {
          hub.publishTicks([tick("AAA", ++seq)]);
          if (performance.now() - started < 400) return;
          clearInterval(timer);
          resolve();
        }, 2);
      });
      const last = await until(messages, "the last tick", m => m.type === "ticks" && m.ticks![0].seq === seq);

      const seqs = seqsOf(messages, "AAA");
      expect(seqs.at(-1)).toBe(seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      expect(new Set(seqs).size).toBe(seqs.length);
      // The hub's sends are at least `interval` apart, all after `started` and before `last`
      // arrived: n messages need (n - 1) intervals of that span.
      const bound = Math.floor((last.at - started) / interval) + 1;
      expect(seqs.length).toBeLessThanOrEqual(bound);
      // And it kept sending while the ticks came, not only once they stopped.
      expect(seqs.length).toBeGreaterThan(1);
      expect(seqs.length).toBeLessThan(seq);
    } finally {
      await close();
    }
  });
});
