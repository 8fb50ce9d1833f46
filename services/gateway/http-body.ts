import type { IncomingMessage } from "node:http";
import { Errors } from "moleculer";

export type BodyFormat = "json" | "ndjson";

/** The ingest content types: JSON (one object or an array) and NDJSON (one object per line). */
export function bodyFormat(contentType: string | undefined): BodyFormat | null {
  if (contentType === "application/json") return "json";
  const type = (contentType ?? "").split(";")[0].trim().toLowerCase();
  if (type === "application/json" || (type.startsWith("application/") && type.endsWith("+json")))
    return "json";
  if (type === "application/x-ndjson" || type === "application/ndjson" || type === "application/jsonl")
    return "ndjson";
  return null;
}

export class HttpError extends Errors.MoleculerClientError {
  constructor(status: number, type: string, message: string, data?: unknown) {
    super(message, status, type, data);
  }
}

/** Reads the whole body, refusing (413) as soon as it grows past `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
    req.on("error", err => {
      if (!failed)
        reject(new HttpError(400, "BODY_READ_ERROR", `could not read the request body: ${err.message}`));
      failed = true;
    });
  });
}

function tooLarge(limit: number): HttpError {
  return new HttpError(
    413,
    "PAYLOAD_TOO_LARGE",
    `the request body exceeds the limit of ${limit} bytes (INGEST_BODY_LIMIT)`,
  );
}

function syntaxIssue(index: number, path: string, err: unknown) {
  return { index, path, message: `is not valid JSON: ${(err as Error).message}` };
}

/** Decodes the body into the list of items it holds: one object, an array, or NDJSON lines. */
export function decodeItems(body: Buffer, format: BodyFormat): unknown[] {
  // A leading byte-order mark is how some Windows tools say "UTF-8"; JSON.parse would refuse it.
  const decoded = body.toString("utf8");
  const text = decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded;
  if (format === "json") {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new HttpError(400, "INVALID_JSON", "the request body is not valid JSON", {
        issues: [syntaxIssue(0, "(body)", err)],
      });
    }
    return Array.isArray(value) ? value : [value];
  }
  const items: unknown[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    try {
      items.push(JSON.parse(line));
    } catch (err) {
      throw new HttpError(400, "INVALID_JSON", `line ${i + 1} of the NDJSON body is not valid JSON`, {
        issues: [syntaxIssue(items.length, `(line ${i + 1})`, err)],
      });
    }
  }
  return items;
}
