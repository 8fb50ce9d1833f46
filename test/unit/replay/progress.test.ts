import {
  etaSeconds,
  formatCount,
  formatDuration,
  formatProgressBar,
  formatProgressLine,
  formatRate,
  progressBar,
  ProgressReporter,
  RateMeter,
} from "../../../replay/progress";

describe("progress formatting", () => {
  it("formats durations as m:ss or h:mm:ss", () => {
    expect(formatDuration(0)).toBe("0:00");
    expect(formatDuration(4.4)).toBe("0:04");
    expect(formatDuration(723)).toBe("12:03");
    expect(formatDuration(3723)).toBe("1:02:03");
    expect(formatDuration(null)).toBe("--:--");
    expect(formatDuration(Infinity)).toBe("--:--");
  });

  it("groups thousands and scales rates", () => {
    expect(formatCount(5105)).toBe("5,105");
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(12)).toBe("12");
    expect(formatRate(0.5)).toBe("0.5 rows/s");
    expect(formatRate(812.4)).toBe("812 rows/s");
    expect(formatRate(2430)).toBe("2.4k rows/s");
    expect(formatRate(81234)).toBe("81k rows/s");
    expect(formatRate(null)).toBe("- rows/s");
  });

  it("draws a bar of the given width in eighths", () => {
    expect(progressBar(0, 10)).toBe(" ".repeat(10));
    expect(progressBar(1, 10)).toBe("█".repeat(10));
    expect(progressBar(0.5, 10)).toBe("█████     ");
    expect(progressBar(0.05, 10)).toBe("▌         ");
    expect([...progressBar(0.333, 7)]).toHaveLength(7);
    expect(progressBar(2, 4)).toBe("████");
  });

  const snapshot = { label: "SPX", done: 2048, total: 5105, rejected: 0, rate: 812 };

  it("estimates the time left from the recent rate", () => {
    expect(etaSeconds(snapshot)).toBeCloseTo(3057 / 812, 9);
    expect(etaSeconds({ ...snapshot, rate: null })).toBeNull();
    expect(etaSeconds({ ...snapshot, done: 5105, rate: null })).toBe(0);
  });

  it("prints a plain line for logs", () => {
    expect(formatProgressLine(snapshot)).toBe(
      "SPX: 2,048/5,105 rows (40.1%), 812 rows/s, ETA 0:04, 0 rejected",
    );
  });

  it("fits the terminal line to its width, rejections shown only when there are some", () => {
    const line = formatProgressBar(snapshot, 80);
    expect(line.startsWith("SPX █")).toBe(true);
    expect(line.endsWith(" 2,048/5,105  40.1%  812 rows/s  ETA 0:04")).toBe(true);
    expect([...line].length).toBeLessThanOrEqual(79);
    expect(formatProgressBar({ ...snapshot, rejected: 3 }, 100)).toMatch(/ETA 0:04 {2}3 rejected$/);
    expect([...formatProgressBar(snapshot, 30)].length).toBeLessThanOrEqual(29);
  });
});

describe("RateMeter", () => {
  it("measures over its window only, so the rate follows the current pace", () => {
    const meter = new RateMeter(1000);
    expect(meter.rate()).toBeNull();
    meter.record(0, 0);
    meter.record(500, 100);
    expect(meter.rate()).toBe(200);
    for (const t of [1000, 1500, 2000, 2500]) meter.record(t, 100 + (t - 500) / 10);
    // 200 rows/s at first, 100 rows/s over the last second: the meter says 100, not the run's 120.
    expect(meter.rate()).toBe(100);
  });
});

describe("ProgressReporter", () => {
  const output = (isTTY: boolean) => {
    const chunks: string[] = [];
    return { chunks, out: { isTTY, columns: 60, write: (t: string) => chunks.push(t) } };
  };

  it("without a terminal, writes whole lines and never a carriage return", () => {
    const { chunks, out } = output(false);
    let t = 0;
    const reporter = new ProgressReporter(out, "SPX", { now: () => t });
    reporter.start(100, 0, 0);
    t = 1000;
    reporter.update(50, 1);
    reporter.log("a message");
    reporter.stop();
    expect(chunks).toEqual(["a message\n", "SPX: 50/100 rows (50.0%), 50 rows/s, ETA 0:01, 1 rejected\n"]);
  });

  it("on a terminal, redraws one line and clears it before a message", () => {
    const { chunks, out } = output(true);
    const reporter = new ProgressReporter(out, "SPX", { now: () => 0 });
    reporter.start(100, 10, 0);
    reporter.log("hello");
    reporter.stop();
    expect(chunks[0].startsWith("\rSPX ")).toBe(true);
    expect(chunks[0]).toContain("10/100");
    expect(chunks[0].endsWith("\x1b[K")).toBe(true);
    expect(chunks[1]).toBe("\r\x1b[K");
    expect(chunks[2]).toBe("hello\n");
    expect(chunks[chunks.length - 1]).toBe("SPX: 10/100 rows (10.0%), - rows/s, ETA --:--, 0 rejected\n");
  });
});
