import { EMA as OracleEma, RSI as OracleRsi, SMA as OracleSma } from "technicalindicators";
import { EMA } from "../../../../domain/indicators/ema";
import { RSI } from "../../../../domain/indicators/rsi";
import { SMA } from "../../../../domain/indicators/sma";
import { closeRelative, randomWalk, seededRandom } from "../fixtures";

/**
 * `technicalindicators` as an independent oracle (docs/indicators.md, "How the tests check the definitions"). Its output arrays hold
 * only defined values: SMA and EMA start at input index n-1, RSI at index n.
 */
describe("indicators against the technicalindicators oracle", () => {
  const closes = randomWalk(seededRandom(31), 10_000);

  it.each([2, 10, 20, 50])("SMA(%i) matches to 1e-9 relative at every index", n => {
    const sma = new SMA(n);
    const mine = closes.map(c => sma.update(c));
    const oracle = OracleSma.calculate({ period: n, values: closes });
    expect(oracle.length).toBe(closes.length - n + 1);
    expect(mine.slice(0, n - 1).every(v => v === null)).toBe(true);
    expect(oracle.every((v, k) => closeRelative(mine[k + n - 1], v, 1e-9))).toBe(true);
  });

  it.each([2, 10, 20, 50])("EMA(%i) matches to 1e-9 relative at every index", n => {
    const ema = new EMA(n);
    const mine = closes.map(c => ema.update(c));
    const oracle = OracleEma.calculate({ period: n, values: closes });
    expect(oracle.length).toBe(closes.length - n + 1);
    expect(mine.slice(0, n - 1).every(v => v === null)).toBe(true);
    expect(oracle.every((v, k) => closeRelative(mine[k + n - 1], v, 1e-9))).toBe(true);
  });

  it.each([2, 6, 14, 30])("RSI(%i) matches within 0.01 (the oracle rounds to 2 decimals)", n => {
    const rsi = new RSI(n);
    const mine = closes.map(c => rsi.update(c));
    const oracle = OracleRsi.calculate({ period: n, values: closes });
    expect(oracle.length).toBe(closes.length - n);
    expect(mine.slice(0, n).every(v => v === null)).toBe(true);
    const worst = Math.max(...oracle.map((v, k) => Math.abs((mine[k + n] as number) - v)));
    expect(worst).toBeLessThanOrEqual(0.01);
  });
});
