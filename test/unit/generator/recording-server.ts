import http from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
  remotePort: number;
}

export interface RecordingServer {
  url: string;
  requests: RecordedRequest[];
  /** The most requests that were being handled at the same moment. */
  maxInFlight(): number;
  /** Safe to call twice: a test may close it early to make its port refuse connections. */
  close(): Promise<void>;
}

export interface RecordingServerOptions {
  status?: number;
  /** Hold each answer this long, so concurrent requests overlap visibly. */
  delayMs?: number;
}

/** A throwaway ingest endpoint on 127.0.0.1 and a free port, answering every POST with `status`. */
export async function startRecordingServer(options: RecordingServerOptions = {}): Promise<RecordingServer> {
  const status = options.status ?? 200;
  const requests: RecordedRequest[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => {
      requests.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: JSON.parse(text),
        remotePort: req.socket.remotePort ?? 0,
      });
      const answer = () => {
        inFlight--;
        res.writeHead(status, { "Content-Type": "application/json" });
        res.end(status === 200 ? '{"accepted":1}' : '{"error":"broken on purpose"}');
      };
      if (options.delayMs === undefined) answer();
      else setTimeout(answer, options.delayMs);
    });
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/ingest`,
    requests,
    maxInFlight: () => maxInFlight,
    close: () =>
      new Promise<void>((resolve, reject) => {
        if (!server.listening) return resolve();
        server.closeAllConnections();
        server.close(err => (err ? reject(err) : resolve()));
      }),
  };
}
