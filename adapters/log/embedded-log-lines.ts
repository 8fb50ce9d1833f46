import zlib from "node:zlib";

/** A message as the embedded log holds it, in memory and (one line each) in its partition files. */
export interface StoredMessage {
  key: string | null;
  value: Buffer;
  timestamp: number;
  headers?: Record<string, string>;
}

/**
 * The line format, `{"k":key,"v":value,"t":ms,"h":{headers},"c":crc}` (`h` only when the record has
 * headers): `c` is the CRC-32 of the line's UTF-8
 * bytes before `,"c":`. Lines written before checksums existed lack `c` and are read as they are;
 * older versions read the new lines too, since JSON.parse ignores the extra field.
 */
export function encodeLine(
  key: string,
  value: string,
  timestamp: number,
  headers?: Record<string, string>,
): Buffer {
  const json = JSON.stringify(
    headers ? { k: key, v: value, t: timestamp, h: headers } : { k: key, v: value, t: timestamp },
  );
  const head = json.slice(0, -1);
  const headBytes = Buffer.byteLength(head);
  // `,"c":` + up to 10 digits + `}\n`
  const line = Buffer.allocUnsafe(headBytes + 17);
  line.write(head, 0);
  const end = headBytes + line.write(`,"c":${crc32(line.subarray(0, headBytes))}}\n`, headBytes, "latin1");
  return line.subarray(0, end);
}

function isHeaders(h: unknown): boolean {
  return typeof h === "object" && h !== null && Object.values(h).every(v => typeof v === "string");
}

/** What a line (without its newline) holds: a message, or why it is not one. */
export type ParsedLine = { message: StoredMessage; checksummed: boolean } | { invalid: string };

export function parseLine(line: Buffer): ParsedLine {
  let m: { k?: unknown; v?: unknown; t?: unknown; h?: unknown; c?: unknown };
  try {
    m = JSON.parse(line.toString("utf8"));
  } catch {
    return { invalid: "is not JSON" };
  }
  if (
    typeof m !== "object" ||
    m === null ||
    !(typeof m.k === "string" || m.k === null) ||
    typeof m.v !== "string" ||
    typeof m.t !== "number" ||
    (m.h !== undefined && !isHeaders(m.h))
  ) {
    return { invalid: "is not a log record" };
  }
  const message: StoredMessage = { key: m.k, value: Buffer.from(m.v), timestamp: m.t };
  if (m.h !== undefined) message.headers = m.h as Record<string, string>;
  if (m.c === undefined) return { message, checksummed: false };
  const suffix = `,"c":${String(m.c)}}`;
  const head = line.length - suffix.length;
  if (
    !Number.isInteger(m.c) ||
    head <= 0 ||
    line.toString("latin1", head) !== suffix ||
    crc32(line.subarray(0, head)) !== m.c
  ) {
    return { invalid: "fails its checksum" };
  }
  return { message, checksummed: true };
}

/**
 * Versions before checksums appended after a torn last line without truncating it, gluing the
 * next record to the fragment: `<fragment>{"k":...}`. A serialized record holds `{"k":` only at
 * its start (quotes inside strings are escaped), so the glued record starts at its last
 * occurrence. Returns the record and the fragment's length, or null if the line is not that.
 */
export function splitGluedLine(line: Buffer): { message: StoredMessage; fragmentBytes: number } | null {
  const start = line.lastIndexOf('{"k":');
  if (start <= 0 || line[0] !== 0x7b) return null;
  const parsed = parseLine(line.subarray(start));
  if ("invalid" in parsed || parsed.checksummed) return null;
  return { message: parsed.message, fragmentBytes: start };
}

/** @internal CRC-32 (zlib's polynomial) for Node versions before 20.15, which lack zlib.crc32. */
export function crc32Portable(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const CRC_TABLE = Int32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

const crc32: (data: Uint8Array) => number =
  typeof zlib.crc32 === "function" ? data => zlib.crc32(data) : crc32Portable;
