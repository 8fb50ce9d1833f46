import path from "node:path";
import {
  DEFAULT_BATCH,
  normaliseBaseUrl,
  parseReplayArgs,
  symbolFromFileName,
  UsageError,
  type ReplayCliOptions,
} from "../../../replay/cli";

const options = (argv: string[]): ReplayCliOptions => {
  const parsed = parseReplayArgs(argv);
  if (parsed.help) throw new Error("expected options");
  return parsed.options;
};

describe("parseReplayArgs", () => {
  it("replays a file as fast as the gateway takes it, named after the file, to localhost:5000", () => {
    expect(options(["data/AAPL.csv"])).toEqual({
      files: [{ file: "data/AAPL.csv", symbol: "AAPL" }],
      pacing: { kind: "max" },
      batch: DEFAULT_BATCH,
      concurrency: 4,
      adjusted: false,
      baseUrl: "http://localhost:5000",
      token: undefined,
      timeoutMs: 30_000,
      retries: 8,
      stateDir: ".replay",
      restart: false,
      report: true,
      reportTimeoutMs: 120_000,
    });
  });

  it("takes every option", () => {
    const o = options([
      "x.csv",
      "--symbol",
      "BRK.B",
      "--speed",
      "86400x",
      "--max-gap",
      "2",
      "--batch",
      "500",
      "--concurrency",
      "2",
      "--adjusted",
      "--url",
      "http://gw:8080/",
      "--token",
      "s3cret",
      "--timeout",
      "1000",
      "--retries",
      "0",
      "--state-dir",
      "/tmp/st",
      "--restart",
      "--no-report",
      "--report-timeout",
      "5",
    ]);
    expect(o).toEqual({
      files: [{ file: "x.csv", symbol: "BRK.B" }],
      pacing: { kind: "speed", factor: 86400, maxGapSeconds: 2 },
      batch: 500,
      concurrency: 2,
      adjusted: true,
      baseUrl: "http://gw:8080",
      token: "s3cret",
      timeoutMs: 1000,
      retries: 0,
      stateDir: "/tmp/st",
      restart: true,
      report: false,
      reportTimeoutMs: 5000,
    });
    expect(options(["x.csv", "--symbol", "X", "--rate", "250"]).pacing).toEqual({
      kind: "rate",
      rowsPerSecond: 250,
    });
  });

  it("replays the bundled sample as SPX", () => {
    const o = options(["--sample"]);
    expect(o.files).toHaveLength(1);
    expect(o.files[0].symbol).toBe("SPX");
    expect(path.relative(path.resolve(__dirname, "../../.."), o.files[0].file)).toBe(
      path.join("samples", "sp500-2000.csv"),
    );
  });

  it("replays the sample under another name with --symbol", () => {
    expect(options(["--sample", "--symbol", "GSPC"]).files[0].symbol).toBe("GSPC");
    expect(() => parseReplayArgs(["--sample", "--symbol", "spx"])).toThrow(/upper-case ticker/);
    expect(() => parseReplayArgs(["--sample", "a.csv", "--symbol", "X"])).toThrow(/single file/);
  });

  it("shows the help", () => {
    expect(parseReplayArgs(["--help"])).toEqual({ help: true });
  });

  it.each([
    [[], /name a CSV file/],
    [["a.csv", "b.csv", "--symbol", "X"], /single file/],
    [["a.csv", "--symbol", "aapl"], /--symbol must be an upper-case ticker/],
    [["^GSPC.csv"], /cannot take a ticker from the file name "\^GSPC.csv".*--symbol/],
    [["AAPL.csv", "data/aapl.csv"], /both be replayed as AAPL/],
    [["a.csv", "--speed", "60x", "--rate", "5"], /choose one/],
    [["a.csv", "--speed", "fast"], /--speed must be a factor/],
    [["a.csv", "--max-gap", "3"], /--max-gap applies to --speed only/],
    [["a.csv", "--rate", "0"], /--rate must be a number greater than 0/],
    [["a.csv", "--batch", "1.5"], /--batch must be a whole number/],
    [["a.csv", "--url", "ftp://x"], /http or https/],
    [["a.csv", "--bogus"], /Unknown option/],
  ])("refuses %j", (argv, message) => {
    expect(() => parseReplayArgs(argv as string[])).toThrow(UsageError);
    expect(() => parseReplayArgs(argv as string[])).toThrow(message as RegExp);
  });
});

describe("symbolFromFileName", () => {
  it("takes the file name without its extension, upper case", () => {
    expect(symbolFromFileName("data/AAPL.csv")).toBe("AAPL");
    expect(symbolFromFileName("brk.b.csv")).toBe("BRK.B");
    expect(symbolFromFileName("/x/msft")).toBe("MSFT");
  });
});

describe("normaliseBaseUrl", () => {
  it("takes the base, also from the generator's /ingest URL", () => {
    expect(normaliseBaseUrl("http://localhost:5000")).toBe("http://localhost:5000");
    expect(normaliseBaseUrl("http://localhost:5000/ingest")).toBe("http://localhost:5000");
    expect(normaliseBaseUrl("https://gw.example/stock/")).toBe("https://gw.example/stock");
  });
});
