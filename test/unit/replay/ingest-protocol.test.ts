import { classifyIngestAnswer, rejectedRows } from "../../../replay/ingest-protocol";

describe("classifyIngestAnswer", () => {
  it("does not count a refused connection as possibly delivered", () => {
    const verdict = classifyIngestAnswer(
      { error: "ECONNREFUSED", code: "ECONNREFUSED", aborted: false },
      10,
      "http://x/ingest",
    );
    expect(verdict).toEqual({ kind: "retry", uncertain: false, afterMs: null, message: "ECONNREFUSED" });
    const notReady = classifyIngestAnswer(
      { status: 503, body: '{"error":"starting","type":"NOT_READY"}', retryAfterSeconds: null },
      10,
      "http://x/ingest",
    );
    expect(notReady).toMatchObject({ kind: "retry", uncertain: false });
  });
});

describe("rejectedRows", () => {
  it("groups the gateway's issues by index and ignores indexes outside the request", () => {
    const body = JSON.stringify({
      issues: [
        { index: 2, path: "high", message: "must not be below opening_price or closing_price" },
        { index: 2, path: "volume", message: "must not be negative" },
        { index: 9, path: "low", message: "out of range" },
        { index: "x", path: "low", message: "no index" },
      ],
    });
    expect([...rejectedRows(body, 5)]).toEqual([
      [2, "high: must not be below opening_price or closing_price; volume: must not be negative"],
    ]);
    expect(rejectedRows("not json", 5).size).toBe(0);
  });
});
