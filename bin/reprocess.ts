import { Resources } from "../adapters/resources";
import { TICKER_PATTERN } from "../domain/messages";
import { loadConfigOrExit } from "../lib/config";
import { IndicatorRewrites } from "../runtime/store/reindex";
import { reprocess } from "../runtime/reprocess";

const HELP = `npm run reprocess [-- --symbol SYM ...]

Recomputes the stored indicators (SMA, EMA, RSI) and signals from the stored ticks under the
indicator settings of this environment (SMA_PERIOD, EMA_PERIOD, RSI_PERIOD, RSI_OVERSOLD,
RSI_OVERBOUGHT), in the database DATABASE_URL names (or the embedded PGlite under DATA_DIR:
stop the app first, PGlite allows one process). Run it after changing a setting on the actors
nodes; it is safe while they run, and running it twice changes nothing.

  --symbol SYM   only this symbol (repeatable); default: every symbol with stored ticks`;

function parseArgs(argv: string[]): { symbols?: string[] } {
  const symbols: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") {
      console.log(HELP);
      process.exit(0);
    }
    if (a === "--symbol" && argv[i + 1] !== undefined) {
      const symbol = argv[++i];
      if (!TICKER_PATTERN.test(symbol)) throw new Error(`--symbol ${JSON.stringify(symbol)} is not a ticker`);
      symbols.push(symbol);
      continue;
    }
    throw new Error(`unknown argument ${JSON.stringify(a)}`);
  }
  return symbols.length > 0 ? { symbols } : {};
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`reprocess: ${(err as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  const config = loadConfigOrExit();
  const quiet = { info() {}, debug() {}, warn: console.warn, error: console.error };
  const sql = await new Resources(config, quiet).sql();
  const s = config.indicators;
  console.log(
    `reprocess: SMA ${s.smaPeriod}, EMA ${s.emaPeriod}, RSI ${s.rsiPeriod} (signals below ${s.rsiOversold} / above ${s.rsiOverbought})`,
  );
  const started = Date.now();
  let lastLine = 0;
  const summary = await reprocess(new IndicatorRewrites(sql), s, {
    ...args,
    progress: (symbol, done, total) => {
      if (done === total || Date.now() - lastLine > 2000) {
        lastLine = Date.now();
        console.log(`reprocess: ${done}/${total} symbols (last ${symbol})`);
      }
    },
  });
  await sql.close();
  console.log(
    `reprocess: done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${summary.symbols} symbols, ${summary.ticks} ticks, ${summary.signals} signals`,
  );
}

main().catch(err => {
  console.error(`reprocess failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
