import { HELP, parseGeneratorArgs, parseSymbols, UsageError } from "../../../generator/cli";

describe("generator command line", () => {
  it("leaves every option unset by default, which means the course's behaviour", () => {
    const command = parseGeneratorArgs([]);
    expect(command.help).toBe(false);
    if (command.help) return;
    const set = Object.entries(command.options).filter(([, v]) => v !== undefined && v !== false);
    expect(set).toEqual([]);
  });

  it("reads every option", () => {
    const command = parseGeneratorArgs([
      "--url=http://gw:8080/ingest",
      "--rate",
      "2500.5",
      "--concurrency",
      "64",
      "--count",
      "1000",
      "--duration",
      "30",
      "--symbols",
      "AAPL, BRK.B,BF-B",
      "--batch",
      "100",
      "--seed",
      "demo",
      "--model",
      "walk",
      "--token",
      "T",
      "--timeout",
      "2000",
      "--quiet",
    ]);
    expect(command).toEqual({
      help: false,
      options: {
        url: "http://gw:8080/ingest",
        rate: 2500.5,
        concurrency: 64,
        count: 1000,
        durationSeconds: 30,
        symbols: ["AAPL", "BRK.B", "BF-B"],
        batch: 100,
        seed: "demo",
        model: "walk",
        token: "T",
        timeoutMs: 2000,
        quiet: true,
      },
    });
  });

  it("shows help for --help and -h", () => {
    expect(parseGeneratorArgs(["--help"])).toEqual({ help: true });
    expect(parseGeneratorArgs(["-h"])).toEqual({ help: true });
    for (const flag of [
      "--url",
      "--rate",
      "--concurrency",
      "--count",
      "--duration",
      "--symbols",
      "--batch",
    ]) {
      expect(HELP).toContain(flag);
    }
    for (const flag of ["--seed", "--model", "--token", "--quiet"]) expect(HELP).toContain(flag);
  });

  it("turns --symbols N into N synthetic tickers", () => {
    expect(parseSymbols("1000")).toHaveLength(1000);
    expect(parseSymbols("3")).toEqual(["S0001", "S0002", "S0003"]);
  });

  it("rejects malformed input with a usage error", () => {
    const bad = [
      ["--rate", "fast"],
      ["--rate", "0"],
      ["--count", "-5"],
      ["--count", "1.5"],
      ["--concurrency", "0"],
      ["--batch", "0"],
      ["--model", "garch"],
      ["--symbols", "aapl"],
      ["--symbols", "0"],
      ["--symbols", ","],
      ["--url", "localhost:5000"],
      ["--unknown"],
      ["positional"],
    ];
    for (const argv of bad) expect(() => parseGeneratorArgs(argv)).toThrow(UsageError);
  });
});
