import zlib from "node:zlib";
import fc from "fast-check";
import {
  crc32Portable,
  encodeLine,
  parseLine,
  splitGluedLine,
} from "../../../../adapters/log/embedded-log-lines";

/** A line as the file holds it, without its newline (what the reader hands `parseLine`). */
const bare = (line: Buffer) => {
  expect(line[line.length - 1]).toBe(10);
  return line.subarray(0, -1);
};

const legacyLine = (key: string, value: string, t = 1700000000000) =>
  Buffer.from(JSON.stringify({ k: key, v: value, t }));

const headers = fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 });

describe("the embedded log's line format", () => {
  it("reads back every record it writes, key, value, timestamp and headers, checksummed", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 12 }),
        fc.string({ unit: "binary", maxLength: 40 }),
        fc.integer({ min: 0, max: 4102444800000 }),
        fc.option(headers, { nil: undefined }),
        (key, value, timestamp, h) => {
          const parsed = parseLine(bare(encodeLine(key, value, timestamp, h)));
          expect(parsed).toEqual({
            message: { key, value: Buffer.from(value), timestamp, ...(h ? { headers: h } : {}) },
            checksummed: true,
          });
        },
      ),
    );
  });

  it("writes one line per record: its only newline is the last byte", () => {
    const line = encodeLine("AAPL", 'multi\nline "quoted" \\ value', 1, { "idempotency-key": "a\nb" });
    expect(line.indexOf(10)).toBe(line.length - 1);
  });

  it("is JSON an older reader takes the record from, with the checksum as one more field", () => {
    const line = bare(encodeLine("AAPL", "v", 1700000000000));
    const json = JSON.parse(line.toString("utf8"));
    expect(json).toEqual({ k: "AAPL", v: "v", t: 1700000000000, c: expect.any(Number) });
    expect(json.c).toBe(zlib.crc32(line.subarray(0, line.lastIndexOf(',"c":'))));
  });

  it("reads a line written before checksums as an unchecksummed record", () => {
    expect(parseLine(legacyLine("AAPL", "old"))).toEqual({
      message: { key: "AAPL", value: Buffer.from("old"), timestamp: 1700000000000 },
      checksummed: false,
    });
  });

  it("refuses a line whose bytes no longer match its checksum, whichever byte changed", () => {
    const line = bare(encodeLine("AAPL", "value", 1700000000000));
    const head = line.lastIndexOf(',"c":');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: head - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const damaged = Buffer.from(line);
        damaged[at] ^= flip;
        const parsed = parseLine(damaged);
        expect("invalid" in parsed).toBe(true);
      }),
    );
    const swapped = Buffer.from(line.toString("latin1").replace('"v":"value"', '"v":"valuE"'), "latin1");
    expect(parseLine(swapped)).toEqual({ invalid: "fails its checksum" });
  });

  it("says why a line is not a record", () => {
    expect(parseLine(Buffer.from('{"k":"AAPL","v":"tor'))).toEqual({ invalid: "is not JSON" });
    expect(parseLine(Buffer.from('{"k":"AAPL","v":1,"t":2}'))).toEqual({ invalid: "is not a log record" });
    expect(parseLine(Buffer.from('{"k":"AAPL","v":"x","t":2,"h":{"a":1}}'))).toEqual({
      invalid: "is not a log record",
    });
    expect(parseLine(Buffer.from("null"))).toEqual({ invalid: "is not a log record" });
  });
});

describe("splitGluedLine", () => {
  it("finds the record an older version appended to a torn line, and the fragment's length", () => {
    const fragment = '{"k":"AAPL","v":"{\\"seq\\":2,\\"pri';
    const glued = Buffer.concat([Buffer.from(fragment), legacyLine("AAPL", '{"seq":3}')]);
    expect(splitGluedLine(glued)).toEqual({
      message: { key: "AAPL", value: Buffer.from('{"seq":3}'), timestamp: 1700000000000 },
      fragmentBytes: Buffer.byteLength(fragment),
    });
  });

  it("finds nothing in a whole record, in a line that is not one, or after a checksummed record", () => {
    expect(splitGluedLine(legacyLine("AAPL", "whole"))).toBeNull();
    expect(splitGluedLine(Buffer.from("not json at all"))).toBeNull();
    // Versions that write checksums truncate a torn tail before appending: they glue nothing.
    const checksummed = bare(encodeLine("AAPL", "new", 1));
    expect(splitGluedLine(Buffer.concat([Buffer.from('{"k":"AAPL","v":"to'), checksummed]))).toBeNull();
  });
});

describe("crc32Portable", () => {
  it("is CRC-32 as zlib computes it", () => {
    expect(crc32Portable(Buffer.from("123456789"))).toBe(0xcbf43926);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), data => {
        expect(crc32Portable(data)).toBe(zlib.crc32(data));
      }),
    );
  });
});
