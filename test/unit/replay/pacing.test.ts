import fc from "fast-check";
import { MAX_LAG_MS, Pacer, parseSpeed, scheduleOffsets } from "../../../replay/pacing";

const DAY = 86400;

describe("parseSpeed", () => {
  it("reads factors with or without the x", () => {
    expect(parseSpeed("60x")).toBe(60);
    expect(parseSpeed("60")).toBe(60);
    expect(parseSpeed("1.5X")).toBe(1.5);
    expect(parseSpeed("86400x")).toBe(86400);
    expect(parseSpeed(".5x")).toBe(0.5);
  });

  it("refuses zero, negatives and words", () => {
    for (const text of ["0x", "-2x", "fast", "x", "", "1e3x"]) expect(parseSpeed(text)).toBeNull();
  });
});

describe("scheduleOffsets", () => {
  const days = [0, 1, 2, 5, 6].map(d => 1_600_000_000 + d * DAY);

  it("makes every row due at once at full speed", () => {
    expect(scheduleOffsets(days, { kind: "max" })).toEqual([0, 0, 0, 0, 0]);
  });

  it("spaces rows 1/N s apart at --rate N", () => {
    expect(scheduleOffsets(days, { kind: "rate", rowsPerSecond: 4 })).toEqual([0, 250, 500, 750, 1000]);
  });

  it("divides the gaps between the rows' times by the speed factor", () => {
    // 86400x: one day of data per second; the weekend (3 days) takes 3 s.
    expect(scheduleOffsets(days, { kind: "speed", factor: DAY, maxGapSeconds: 5 })).toEqual([
      0, 1000, 2000, 5000, 6000,
    ]);
  });

  it("caps each wait at --max-gap, so daily bars at 60x do not wait 24 minutes a row", () => {
    expect(scheduleOffsets(days, { kind: "speed", factor: 60, maxGapSeconds: 5 })).toEqual([
      0, 5000, 10000, 15000, 20000,
    ]);
    // Minute bars at 60x: one second each, and the night still costs only the cap.
    const minutes = [0, 60, 120, 120 + 17 * 3600].map(s => 1_600_000_000 + s);
    expect(scheduleOffsets(minutes, { kind: "speed", factor: 60, maxGapSeconds: 5 })).toEqual([
      0, 1000, 2000, 7000,
    ]);
  });

  it("never goes backwards, whatever the timestamps", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 946_684_800, max: 4_102_444_799 }), { maxLength: 50 }),
        fc.double({ min: 0.01, max: 1e6, noNaN: true }),
        fc.double({ min: 0.001, max: 60, noNaN: true }),
        (times, factor, maxGapSeconds) => {
          const offsets = scheduleOffsets(times, { kind: "speed", factor, maxGapSeconds });
          offsets.forEach((o, i) => {
            if (i === 0) expect(o).toBe(0);
            else {
              expect(o).toBeGreaterThanOrEqual(offsets[i - 1]);
              expect(o - offsets[i - 1]).toBeLessThanOrEqual(maxGapSeconds * 1000 + 1e-6);
            }
          });
        },
      ),
    );
  });
});

describe("Pacer", () => {
  const offsets = [0, 100, 200, 300, 400, 500, 600];

  it("says how long until a row is due, from the row it starts at", () => {
    const pacer = new Pacer(offsets, 0, 1000);
    expect(pacer.waitMs(0, 1000)).toBe(0);
    expect(pacer.waitMs(2, 1050)).toBe(150);
  });

  it("resumes at the pace: row k is due at once, row k+1 one step later", () => {
    const pacer = new Pacer(offsets, 3, 5000);
    expect(pacer.waitMs(3, 5000)).toBe(0);
    expect(pacer.waitMs(4, 5000)).toBe(100);
  });

  it("takes every row due by now into one request, at most `max`", () => {
    const pacer = new Pacer(offsets, 0, 0);
    expect(pacer.take(0, 0, 10)).toBe(1);
    expect(pacer.take(1, 250, 10)).toBe(2);
    expect(pacer.take(3, 650, 2)).toBe(2);
    expect(pacer.take(5, 10_000, 10)).toBe(2);
  });

  it("far behind, shifts the schedule instead of sending the backlog in one burst", () => {
    const long = Array.from({ length: 100 }, (_, i) => i * 100);
    const pacer = new Pacer(long, 0, 0);
    // 5 s late for row 0: only the rows of the last MAX_LAG_MS go together.
    expect(pacer.take(0, 5000, 1000)).toBe(MAX_LAG_MS / 100 + 1);
    expect(pacer.waitMs(11, 5000)).toBe(100);
  });

  it("lets a full-speed replay take a whole batch", () => {
    const pacer = new Pacer(new Array(5000).fill(0), 0, 0);
    expect(pacer.take(0, 1, 1000)).toBe(1000);
    expect(pacer.take(4500, 2, 1000)).toBe(500);
  });
});
