import { bodyFormat, decodeItems } from "../../../services/gateway/http-body";

describe("ingest body decoding", () => {
  it("accepts JSON and NDJSON content types, with or without a charset", () => {
    expect(bodyFormat("application/json")).toBe("json");
    expect(bodyFormat("application/json; charset=utf-8")).toBe("json");
    expect(bodyFormat("application/x-ndjson")).toBe("ndjson");
    expect(bodyFormat("text/plain")).toBeNull();
    expect(bodyFormat(undefined)).toBeNull();
  });

  it("reads one object as a batch of one and an array as it is", () => {
    expect(decodeItems(Buffer.from('{"a":1}'), "json")).toEqual([{ a: 1 }]);
    expect(decodeItems(Buffer.from('[{"a":1},{"a":2}]'), "json")).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it("ignores a leading UTF-8 byte-order mark", () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    expect(decodeItems(Buffer.concat([bom, Buffer.from('{"a":1}')]), "json")).toEqual([{ a: 1 }]);
    expect(decodeItems(Buffer.concat([bom, Buffer.from('{"a":1}\n{"a":2}\n')]), "ndjson")).toEqual([
      { a: 1 },
      { a: 2 },
    ]);
  });

  it("names the NDJSON line that is not JSON", () => {
    expect(() => decodeItems(Buffer.from('{"a":1}\n{oops\n'), "ndjson")).toThrow(/line 2 of the NDJSON body/);
  });
});
