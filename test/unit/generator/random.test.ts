import { createRandom, logGamma } from "../../../generator/random";

const stats = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return { mean, sd: Math.sqrt(variance), min: Math.min(...xs), max: Math.max(...xs) };
};

const draws = (n: number, draw: () => number) => Array.from({ length: n }, draw);

describe("seeded random", () => {
  it("replays the same sequence for the same seed, string or number", () => {
    for (const seed of ["demo", 42]) {
      const a = createRandom(seed);
      const b = createRandom(seed);
      const sequence = () => [a.next(), a.normal(), a.poisson(5000), a.poisson(3), a.int(1, 100)];
      const replay = () => [b.next(), b.normal(), b.poisson(5000), b.poisson(3), b.int(1, 100)];
      for (let i = 0; i < 100; i++) expect(sequence()).toEqual(replay());
    }
  });

  it("gives unrelated sequences for nearby seeds", () => {
    const a = draws(20, createRandom("seed-1").next);
    const b = draws(20, createRandom("seed-2").next);
    expect(a.filter((x, i) => x === b[i])).toHaveLength(0);
  });

  it("keeps uniform draws in [a, b) with the right mean", () => {
    const rng = createRandom(1);
    const xs = draws(20000, () => rng.uniform(-5, 5));
    const s = stats(xs);
    expect(s.min).toBeGreaterThanOrEqual(-5);
    expect(s.max).toBeLessThan(5);
    expect(s.mean).toBeCloseTo(0, 1);
    expect(s.sd).toBeCloseTo(10 / Math.sqrt(12), 1);
  });

  it("draws integers over the whole inclusive range", () => {
    const rng = createRandom(2);
    const seen = new Set(draws(5000, () => rng.int(1, 100)));
    expect(Math.min(...seen)).toBe(1);
    expect(Math.max(...seen)).toBe(100);
    expect(seen.size).toBe(100);
  });

  it("draws normals with the requested mean and standard deviation", () => {
    const rng = createRandom(3);
    const s = stats(draws(20000, () => rng.normal(10, 2)));
    expect(Math.abs(s.mean - 10)).toBeLessThan(0.05);
    expect(Math.abs(s.sd - 2)).toBeLessThan(0.05);
  });

  it("draws Poisson(5000) with mean 5000 and standard deviation about 71", () => {
    const rng = createRandom(4);
    const xs = draws(20000, () => rng.poisson(5000));
    const s = stats(xs);
    expect(xs.every(Number.isSafeInteger)).toBe(true);
    expect(Math.abs(s.mean - 5000)).toBeLessThan(2);
    expect(Math.abs(s.sd - Math.sqrt(5000))).toBeLessThan(2);
  });

  it("draws small-lambda Poisson with mean and variance lambda", () => {
    const rng = createRandom(5);
    for (const lambda of [0.5, 3, 12]) {
      const s = stats(draws(20000, () => rng.poisson(lambda)));
      expect(Math.abs(s.mean - lambda)).toBeLessThan(0.1 * Math.max(1, Math.sqrt(lambda)));
      expect(Math.abs(s.sd ** 2 - lambda)).toBeLessThan(0.1 * Math.max(1, lambda));
      expect(s.min).toBeGreaterThanOrEqual(0);
    }
  });

  it("picks every element of an array about equally often", () => {
    const rng = createRandom(6);
    const counts = new Map<string, number>();
    for (let i = 0; i < 20000; i++) {
      const x = rng.choice(["a", "b", "c", "d"]);
      counts.set(x, (counts.get(x) ?? 0) + 1);
    }
    for (const n of counts.values()) expect(Math.abs(n - 5000)).toBeLessThan(300);
    expect(() => rng.choice([])).toThrow(RangeError);
  });

  it("computes log-gamma to many digits", () => {
    expect(logGamma(1)).toBeCloseTo(0, 12);
    expect(logGamma(11)).toBeCloseTo(Math.log(3628800), 10);
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 12);
    // ln(5000!) by Stirling's series, which is exact to far below the tolerance at this size.
    const n = 5000;
    const stirling =
      n * Math.log(n) - n + 0.5 * Math.log(2 * Math.PI * n) + 1 / (12 * n) - 1 / (360 * n ** 3);
    expect(logGamma(n + 1)).toBeCloseTo(stirling, 7);
  });
});
