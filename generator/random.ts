/**
 * A small seeded PRNG for the load generator: the same seed gives the same message content on
 * every machine and Node version, which `Math.random` cannot promise. sfc32 passes PractRand and
 * is a few lines; the seed, a string or a number, is spread over its 128-bit state by cyrb128.
 */

export type Seed = string | number;

export interface Random {
  /** A float in [0, 1) with 53 random bits. */
  next(): number;
  /** A float in [a, b), as Python's `random.uniform`. */
  uniform(a: number, b: number): number;
  /** An integer in [a, b], both ends included, as Python's `random.randint`. */
  int(a: number, b: number): number;
  /** A draw from N(mu, sigma^2) by Box-Muller. */
  normal(mu?: number, sigma?: number): number;
  /** A draw from Poisson(lambda): exact for every lambda (Knuth below 10, PTRS from 10 on). */
  poisson(lambda: number): number;
  /** One element of a non-empty array, each equally likely. */
  choice<T>(items: readonly T[]): T;
}

/** cyrb128: four independent 32-bit hashes of the seed's text, so nearby seeds give unrelated states. */
function cyrb128(text: string): [number, number, number, number] {
  let h1 = 1779033703;
  let h2 = 3144134277;
  let h3 = 1013904242;
  let h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

function sfc32(seed: [number, number, number, number]): () => number {
  let [a, b, c, d] = seed;
  const step = (): number => {
    a |= 0;
    b |= 0;
    c |= 0;
    d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  // The first outputs still carry the structure of the hash; the reference code discards them too.
  for (let i = 0; i < 15; i++) step();
  return step;
}

/** Lanczos approximation (g = 7, n = 9): about 15 significant digits, all PTRS's acceptance test needs. */
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let sum = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) sum += LANCZOS[i] / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

export function createRandom(seed: Seed): Random {
  const raw = sfc32(cyrb128(String(seed)));
  const next = (): number => ((raw() >>> 5) * 67108864 + (raw() >>> 6)) / 9007199254740992;
  let spareNormal: number | undefined;

  const standardNormal = (): number => {
    if (spareNormal !== undefined) {
      const z = spareNormal;
      spareNormal = undefined;
      return z;
    }
    // 1 - next() lies in (0, 1], so the logarithm stays finite.
    const radius = Math.sqrt(-2 * Math.log(1 - next()));
    const angle = 2 * Math.PI * next();
    spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };

  const knuthPoisson = (lambda: number): number => {
    const limit = Math.exp(-lambda);
    let k = 0;
    let product = next();
    while (product > limit) {
      k++;
      product *= next();
    }
    return k;
  };

  /**
   * Hörmann's transformed rejection with squeeze (PTRS, 1993), as numpy uses for lambda >= 10:
   * exact, and O(1) expected draws where Knuth's method would need lambda of them (5000 for volumes).
   */
  const ptrsPoisson = (lambda: number): number => {
    const sqrtLambda = Math.sqrt(lambda);
    const logLambda = Math.log(lambda);
    const b = 0.931 + 2.53 * sqrtLambda;
    const a = -0.059 + 0.02483 * b;
    const invAlpha = 1.1239 + 1.1328 / (b - 3.4);
    const vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
      const u = next() - 0.5;
      const v = next();
      const us = 0.5 - Math.abs(u);
      const k = Math.floor(((2 * a) / us + b) * u + lambda + 0.43);
      if (us >= 0.07 && v <= vr) return k;
      if (k < 0 || (us < 0.013 && v > us)) continue;
      const lhs = Math.log(v) + Math.log(invAlpha) - Math.log(a / (us * us) + b);
      if (lhs <= -lambda + k * logLambda - logGamma(k + 1)) return k;
    }
  };

  return {
    next,
    uniform: (a, b) => a + (b - a) * next(),
    int: (a, b) => a + Math.floor((b - a + 1) * next()),
    normal: (mu = 0, sigma = 1) => mu + sigma * standardNormal(),
    poisson: lambda => {
      if (!(lambda >= 0) || !Number.isFinite(lambda))
        throw new RangeError(`poisson: lambda must be >= 0, got ${lambda}`);
      return lambda < 10 ? knuthPoisson(lambda) : ptrsPoisson(lambda);
    },
    choice: items => {
      if (items.length === 0) throw new RangeError("choice: the array is empty");
      return items[Math.floor(items.length * next())];
    },
  };
}
