import { messageKey, parseMessage } from "../../../domain/messages";

const economic = {
  data_type: "economic_indicator",
  timestamp: 1764151200,
  indicator_name: "GDP Growth Rate",
  value: -1.5,
};

describe("economic indicator messages", () => {
  it("are accepted without a symbol and keyed by their indicator name", () => {
    const r = parseMessage(economic);
    expect(r.ok).toBe(true);
    if (r.ok) expect(messageKey(r.message)).toBe("GDP Growth Rate");
  });

  it("reject an indicator name with control characters, which Postgres text cannot always hold", () => {
    const r = parseMessage({ ...economic, indicator_name: "GDP\u0000Rate" });
    expect(r).toEqual({
      ok: false,
      issues: [{ path: "indicator_name", message: "must not contain control characters" }],
    });
  });
});
