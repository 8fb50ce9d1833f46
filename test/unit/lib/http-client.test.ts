import http from "node:http";
import type { AddressInfo } from "node:net";
import { HttpClient, type HttpClientOptions } from "../../../lib/http-client";
import { freePort } from "../../../lib/net";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  remotePort: number;
}

/** A local server that records each request and lets the test write the response. */
async function startServer(respond: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body,
        remotePort: req.socket.remotePort ?? 0,
      });
      respond(req, res);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (pathname: string) => new URL(pathname, `http://127.0.0.1:${port}`),
    seen,
    close: () =>
      new Promise<void>(resolve => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Server = Awaited<ReturnType<typeof startServer>>;

describe("HttpClient", () => {
  let server: Server | undefined;
  let client: HttpClient | undefined;
  const options: HttpClientOptions = { timeoutMs: 2000, maxSockets: 2, maxBodyChars: 1000 };
  afterEach(async () => {
    client?.close();
    await server?.close();
    client = server = undefined;
  });

  it("posts JSON with its length, the bearer token and the client's and the request's headers", async () => {
    server = await startServer((_, res) => res.end('{"accepted":1}'));
    client = new HttpClient({ ...options, token: "s3cret", headers: { Accept: "application/json" } });
    const json = JSON.stringify({ price: "1 €" });
    const outcome = await client.post(server.url("/ingest"), { json, headers: { "Idempotency-Key": "k-1" } });

    expect(outcome).toEqual({ status: 200, body: '{"accepted":1}', retryAfterSeconds: null });
    const [seen] = server.seen;
    expect(seen).toMatchObject({ method: "POST", url: "/ingest", body: json });
    expect(seen.headers).toMatchObject({
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(json)),
      authorization: "Bearer s3cret",
      accept: "application/json",
      "idempotency-key": "k-1",
    });
  });

  it("sends a GET without a body or a content type", async () => {
    server = await startServer((_, res) => res.end("[]"));
    client = new HttpClient(options);
    expect(await client.get(server.url("/api/symbols"))).toMatchObject({ status: 200, body: "[]" });
    expect(server.seen[0].method).toBe("GET");
    expect(server.seen[0].headers["content-type"]).toBeUndefined();
    expect(server.seen[0].headers.authorization).toBeUndefined();
  });

  it("keeps the connection alive: consecutive requests reuse one socket", async () => {
    server = await startServer((_, res) => res.end("ok"));
    client = new HttpClient({ ...options, skipOkBodies: true });
    for (let i = 0; i < 3; i++) await client.post(server.url("/ingest"), { json: "{}" });
    expect(new Set(server.seen.map(s => s.remotePort)).size).toBe(1);
    expect(new Set(server.seen.map(s => s.headers.connection))).toEqual(new Set(["keep-alive"]));
  });

  it("with skipOkBodies drains a 200 unread and still keeps a failure's body, cut at maxBodyChars", async () => {
    let status = 200;
    server = await startServer((_, res) => {
      res.writeHead(status);
      res.end("x".repeat(5000));
    });
    client = new HttpClient({ ...options, maxBodyChars: 100, skipOkBodies: true });
    expect(await client.post(server.url("/ingest"), { json: "{}" })).toEqual({
      status: 200,
      body: "",
      retryAfterSeconds: null,
    });
    status = 400;
    const failed = await client.post(server.url("/ingest"), { json: "{}" });
    expect(failed).toEqual({ status: 400, body: "x".repeat(100), retryAfterSeconds: null });
  });

  it("reads Retry-After in seconds, and ignores a date", async () => {
    let retryAfter = "3";
    server = await startServer((_, res) => {
      res.writeHead(429, { "Retry-After": retryAfter });
      res.end();
    });
    client = new HttpClient(options);
    expect(await client.get(server.url("/"))).toMatchObject({ status: 429, retryAfterSeconds: 3 });
    retryAfter = "Wed, 21 Oct 2037 07:28:00 GMT";
    expect(await client.get(server.url("/"))).toMatchObject({ status: 429, retryAfterSeconds: null });
  });

  it("answers a request that gets no answer in time with a timeout failure", async () => {
    server = await startServer(() => undefined);
    client = new HttpClient({ ...options, timeoutMs: 100 });
    expect(await client.post(server.url("/ingest"), { json: "{}" })).toEqual({
      error: "no answer within 100 ms",
      code: "timeout",
      aborted: false,
    });
  });

  it("abandons a request when its signal aborts, and never sends one whose signal already has", async () => {
    server = await startServer(() => undefined);
    client = new HttpClient(options);
    const abandon = new AbortController();
    const pending = client.post(server.url("/ingest"), { json: "{}", signal: abandon.signal });
    while (server.seen.length === 0) await new Promise(resolve => setTimeout(resolve, 5));
    abandon.abort();
    const abandoned = { error: "abandoned", code: "abandoned", aborted: true };
    expect(await pending).toEqual(abandoned);
    expect(await client.post(server.url("/ingest"), { json: "{}", signal: abandon.signal })).toEqual(
      abandoned,
    );
    expect(server.seen).toHaveLength(1);
  });

  it("answers a refused connection with its errno code", async () => {
    client = new HttpClient(options);
    const port = await freePort();
    expect(await client.get(new URL(`http://127.0.0.1:${port}/`))).toEqual({
      error: "ECONNREFUSED",
      code: "ECONNREFUSED",
      aborted: false,
    });
  });

  it("answers a response cut off mid-body as a reset connection", async () => {
    server = await startServer((_, res) => {
      res.writeHead(400, { "Content-Length": "1000" });
      res.write("partial");
      setTimeout(() => res.destroy(), 20);
    });
    client = new HttpClient(options);
    expect(await client.get(server.url("/"))).toMatchObject({ code: "ECONNRESET", aborted: false });
  });

  it("resolves, not rejects, when node refuses a header value before sending", async () => {
    client = new HttpClient({ ...options, token: "bad\ntoken" });
    const outcome = await client.get(new URL("http://127.0.0.1:1/"));
    expect(outcome).toMatchObject({ code: "ERR_INVALID_CHAR", aborted: false });
  });
});
