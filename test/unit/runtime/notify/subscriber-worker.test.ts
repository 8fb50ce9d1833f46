import { retryDelay } from "../../../../runtime/notify/subscriber-worker";

describe("retryDelay", () => {
  it("doubles from 0.2 s, with full jitter between half and all of each step", () => {
    expect([1, 2, 3, 4].map(n => retryDelay(n, () => 1))).toEqual([200, 400, 800, 1600]);
    expect([1, 2, 3, 4].map(n => retryDelay(n, () => 0))).toEqual([100, 200, 400, 800]);
  });

  it("never waits longer than ten minutes, however many attempts failed", () => {
    expect(retryDelay(40, () => 1)).toBe(600000);
    expect(retryDelay(1000, () => 1)).toBe(600000);
  });
});
