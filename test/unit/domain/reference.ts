/**
 * Straightforward full-recompute versions of docs/indicators.md, written line by line from the formulas with
 * no running state, for the streaming classes to be checked against. Slow on purpose: clarity over speed.
 */

/** `SMA[i] = (c[i-n+1] + ... + c[i]) / n`, each window summed afresh. */
export function referenceSma(closes: readonly number[], n: number): (number | null)[] {
  return closes.map((_, i) => {
    if (i < n - 1) return null;
    let sum = 0;
    for (let k = i - n + 1; k <= i; k++) sum += closes[k];
    return sum / n;
  });
}

/** Seed `EMA[n-1]` = mean of the first n closes, then `EMA[i] = alpha * c[i] + (1 - alpha) * EMA[i-1]`. */
export function referenceEma(closes: readonly number[], n: number): (number | null)[] {
  const alpha = 2 / (n + 1);
  const out: (number | null)[] = closes.map(() => null);
  if (closes.length < n) return out;
  let seed = 0;
  for (let k = 0; k < n; k++) seed += closes[k];
  out[n - 1] = seed / n;
  for (let i = n; i < closes.length; i++) {
    out[i] = alpha * closes[i] + (1 - alpha) * (out[i - 1] as number);
  }
  return out;
}

/** Wilder's RSI: seed averages over changes 1..n, then `avg[i] = (avg[i-1] * (n-1) + x[i]) / n`. */
export function referenceRsi(closes: readonly number[], n: number): (number | null)[] {
  const out: (number | null)[] = closes.map(() => null);
  if (closes.length < n + 1) return out;
  const gain: number[] = [0];
  const loss: number[] = [0];
  for (let i = 1; i < closes.length; i++) {
    const d = closes[i] - closes[i - 1];
    gain.push(Math.max(d, 0));
    loss.push(Math.max(-d, 0));
  }
  let avgGain = 0;
  let avgLoss = 0;
  for (let i = 1; i <= n; i++) {
    avgGain += gain[i];
    avgLoss += loss[i];
  }
  avgGain /= n;
  avgLoss /= n;
  out[n] = rsiFrom(avgGain, avgLoss);
  for (let i = n + 1; i < closes.length; i++) {
    avgGain = (avgGain * (n - 1) + gain[i]) / n;
    avgLoss = (avgLoss * (n - 1) + loss[i]) / n;
    out[i] = rsiFrom(avgGain, avgLoss);
  }
  return out;
}

function rsiFrom(avgGain: number, avgLoss: number): number {
  if (avgLoss === 0 && avgGain > 0) return 100;
  if (avgLoss === 0 && avgGain === 0) return 50;
  return 100 - 100 / (1 + avgGain / avgLoss);
}

/** The signal rule evaluated at every index of an RSI series, by looking back one step. */
export function referenceSignals(
  rsi: readonly (number | null)[],
  oversold: number,
  overbought: number,
): ("buy" | "sell" | null)[] {
  return rsi.map((r, i) => {
    if (r === null) return null;
    const prev = i > 0 ? rsi[i - 1] : null;
    if (r < oversold && (prev === null || prev >= oversold)) return "buy";
    if (r > overbought && (prev === null || prev <= overbought)) return "sell";
    return null;
  });
}
