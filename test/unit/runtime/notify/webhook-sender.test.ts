import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { freePort } from "../../../../lib/net";
import type { StoredSignal } from "../../../../runtime/notify/delivery-store";
import { signalEvent, WebhookSender } from "../../../../runtime/notify/webhook-sender";
import { WebhookSigner } from "../../../../runtime/notify/webhook-signature";

/** The sender against a real HTTP server on loopback: what each answer means, and what it sends. */

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const signal: StoredSignal = {
  id: 7,
  tx: "900",
  symbol: "TSLA",
  side: "buy",
  rsi: 23.5,
  price: 236.86,
  timestamp: 1795687311,
  seq: 812,
  createdAt: 1795687312120,
};

let server: http.Server;
let url = "";
let answer: (res: http.ServerResponse) => void = res => res.writeHead(204).end();
const seen: { headers: http.IncomingHttpHeaders; body: string }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", c => (body += c));
    req.on("end", () => {
      seen.push({ headers: req.headers, body });
      answer(res);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});
afterAll(() => new Promise<void>(resolve => server.close(() => resolve())));

const sender = (timeoutMs = 1000) => new WebhookSender(new WebhookSigner(SECRET), timeoutMs);

describe("WebhookSender", () => {
  it("POSTs the signal as a signed Standard Webhooks event and counts a 2xx as delivered", async () => {
    answer = res => res.writeHead(204).end();
    const event = signalEvent(signal, "BUY TSLA at 236.86");
    expect(await sender().send(url, event)).toEqual({ kind: "delivered", status: 204 });
    const last = seen[seen.length - 1];
    expect(last.headers["webhook-id"]).toBe("sig_TSLA_812");
    expect(last.headers["content-type"]).toBe("application/json");
    const verified = new Webhook(SECRET).verify(last.body, last.headers as Record<string, string>);
    expect(verified).toEqual({
      type: "signal.created",
      timestamp: "2026-11-26T10:01:52.120Z",
      data: {
        symbol: "TSLA",
        seq: 812,
        side: "buy",
        rsi: 23.5,
        price: 236.86,
        timestamp: "2026-11-26T10:01:51.000Z",
        message: "BUY TSLA at 236.86",
      },
    });
  });

  it("sends the same id and bytes on every attempt", async () => {
    answer = res => res.writeHead(200).end();
    await sender().send(url, signalEvent(signal, "m"));
    await sender().send(url, signalEvent(signal, "m"));
    const [a, b] = seen.slice(-2);
    expect(a.body).toBe(b.body);
    expect(a.headers["webhook-id"]).toBe(b.headers["webhook-id"]);
  });

  it("tells a 410 Gone from other failures", async () => {
    answer = res => res.writeHead(410).end();
    expect(await sender().send(url, signalEvent(signal, "m"))).toEqual({ kind: "gone", status: 410 });
    answer = res => res.writeHead(500).end();
    expect(await sender().send(url, signalEvent(signal, "m"))).toEqual({
      kind: "failed",
      error: "answered 500",
    });
    answer = res => res.writeHead(302, { location: "http://127.0.0.1:1/" }).end();
    expect(await sender().send(url, signalEvent(signal, "m"))).toEqual({
      kind: "failed",
      error: "answered 302",
    });
  });

  it("fails a receiver that does not answer in time, and one that is not there", async () => {
    answer = () => undefined;
    expect(await sender(200).send(url, signalEvent(signal, "m"))).toEqual({
      kind: "failed",
      error: "no answer within 200 ms",
    });
    server.closeAllConnections();
    const nobody = await freePort();
    const refused = await sender().send(`http://127.0.0.1:${nobody}/hook`, signalEvent(signal, "m"));
    expect(refused).toEqual({ kind: "failed", error: "ECONNREFUSED" });
  });
});
