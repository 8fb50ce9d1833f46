import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

/** One delivery as the receiver took it. */
export interface Received {
  id: string;
  /** Whether its Standard Webhooks signature verified under the shared secret. */
  verified: boolean;
  body: {
    type: string;
    timestamp: string;
    data: { symbol: string; seq: number; side: string; message: string };
  };
  status: number;
  at: number;
}

/**
 * A webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures, as a subscriber's
 * server would, and answers what the test says: `answer(n)` gives the status of the n-th request
 * (from 1). It can go away (its port refuses connections) and come back on the same port.
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  private server: http.Server | null = null;
  private port = 0;
  private requests = 0;

  constructor(
    private readonly secret: string,
    private answer: (n: number, id: string) => number = () => 200,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  answerWith(answer: (n: number, id: string) => number): void {
    this.answer = answer;
  }

  /** The deliveries it answered 2xx, in arrival order. */
  accepted(): Received[] {
    return this.received.filter(r => r.status >= 200 && r.status < 300);
  }

  async start(port = this.port): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Goes away: the port refuses connections until `start()` again. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>(resolve => server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      let verified = true;
      try {
        new Webhook(this.secret).verify(raw, headers);
      } catch {
        verified = false;
      }
      const id = headers["webhook-id"] ?? "";
      const status = this.answer(++this.requests, id);
      this.received.push({ id, verified, body: JSON.parse(raw) as Received["body"], status, at: Date.now() });
      res.statusCode = status;
      res.end();
    });
  }
}
