import http from "node:http";
import type { StockMessage } from "../../../domain/messages";
import { createNode, type StockNode } from "../../../app/node";
import { gatewayPort, waitUntilReady } from "../../support/ports";
import {
  deleteTopic,
  readTopic,
  STACK,
  testConfig,
  topicSize,
  uniqueName,
  type ConsumedRecord,
} from "../../support/stack";

/** A gateway+ingest node in this process, listening on loopback, producing to its own topic. */
export interface IngestNode {
  node: StockNode;
  url: string;
  topic: string;
  partitions: number;
  /** Stops the node; deletes the topic it created on the shared broker. */
  stop(): Promise<void>;
}

export async function startIngestNode(
  prefix: string,
  overrides: Record<string, string | undefined> = {},
): Promise<IngestNode> {
  const topic = uniqueName(prefix);
  const config = testConfig({
    SERVICES: "gateway,ingest",
    KAFKA_BROKERS: STACK.kafkaBrokers,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: "6",
    // The OS picks the port when the gateway listens (read back below): a port picked beforehand
    // could be taken by another process before the node listens on it.
    PORT: "0",
    HOST: "127.0.0.1",
    NODE_ID: uniqueName(prefix),
    // The shared broker of a loaded machine can take seconds to acknowledge; the default 5 s ack
    // timeout would turn that into a 503 in tests that are not about the timeout.
    KAFKA_ACK_TIMEOUT_MS: "30000",
    ...overrides,
  });
  const node = createNode(config);
  await node.broker.start();
  const port = gatewayPort(node);
  // A node's ingest service may still be starting when broker.start() resolves (503 until then).
  if (config.services.includes("ingest")) await waitUntilReady(`http://127.0.0.1:${port}`);
  // Only the ingest service creates the topic; deleting one that does not exist makes kafkajs retry for long.
  const ownsTopic =
    config.kafka.brokers?.join(",") === STACK.kafkaBrokers && config.services.includes("ingest");
  return {
    node,
    url: `http://127.0.0.1:${port}/ingest`,
    topic,
    partitions: config.kafka.partitions,
    stop: async () => {
      await node.broker.stop();
      if (ownsTopic) await deleteTopic(topic);
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The parsed body; undefined when it is not JSON. */
  json: unknown;
  elapsedMs: number;
}

export interface PostOptions {
  /** null sends no Content-Type header at all (fetch would add text/plain). */
  contentType?: string | null;
  headers?: Record<string, string>;
  /** Send with Transfer-Encoding: chunked in pieces of this many bytes instead of a Content-Length. */
  chunkBytes?: number;
}

/**
 * A raw node:http POST, so a test controls every header. A fresh connection per request: a
 * keep-alive socket the server closes while idle can fail the next request with ECONNRESET.
 */
export function post(url: string, body: string | Buffer, options: PostOptions = {}): Promise<Reply> {
  const payload = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  const headers: Record<string, string> = { ...options.headers };
  const contentType = options.contentType === undefined ? "application/json" : options.contentType;
  if (contentType !== null) headers["Content-Type"] = contentType;
  if (options.chunkBytes === undefined) headers["Content-Length"] = String(payload.length);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers, agent: false });
    req.setTimeout(60000, () => req.destroy(new Error(`no answer from ${url} within 60 s`)));
    req.on("error", reject);
    req.on("response", res => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json,
          elapsedMs: performance.now() - started,
        });
      });
    });
    if (options.chunkBytes === undefined) {
      req.end(payload);
    } else {
      for (let i = 0; i < payload.length; i += options.chunkBytes)
        req.write(payload.subarray(i, i + options.chunkBytes));
      req.end();
    }
  });
}

export const postJson = (url: string, value: unknown, options: PostOptions = {}) =>
  post(url, JSON.stringify(value), options);

/** The shape every error leaves the gateway with. */
export interface ErrorBody {
  error: string;
  type?: string;
  issues?: { index: number; path: string; message: string }[];
  retryable?: boolean;
}

/** A current timestamp in epoch seconds with a fraction, as the course generator sends it. */
export const nowSeconds = () => Date.now() / 1000;

/** A valid price tick; `overrides` with undefined values drop the field. */
export function tick(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    stock_symbol: "AAPL",
    opening_price: 1000.25,
    closing_price: 1003.5,
    high: 1007.75,
    low: 996.1,
    volume: 5012,
    timestamp: nowSeconds(),
    ...overrides,
  };
}

/** Key order ignored: zod's output follows its schema, not the input. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** What ingest keys a message by: its symbol, or the indicator name for market-wide data. */
export function expectedKey(message: StockMessage | Record<string, unknown>): string {
  const m = message as Record<string, unknown>;
  return typeof m.stock_symbol === "string" ? m.stock_symbol : String(m.indicator_name);
}

/** Every message of a topic on `brokers`, read from the beginning until the high watermarks. */
export async function readAll(brokers: string, topic: string, timeoutMs = 60000): Promise<ConsumedRecord[]> {
  const total = await topicSize(topic, brokers);
  if (total === 0) return [];
  return readTopic(topic, total, timeoutMs, brokers);
}
