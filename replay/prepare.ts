import fs from "node:fs";
import path from "node:path";
import { fetchTickCount } from "./api";
import type { GatewayClient } from "./client";
import { barToTick, CsvFormatError, parseDailyCsv, type ParsedCsv } from "./csv";
import type { ReplayFileSpec } from "./cli";
import { formatCount } from "./progress";
import type { ReplayJob } from "./run";
import {
  contentHash,
  loadState,
  newState,
  saveState,
  statePath,
  StateError,
  type ReplayState,
} from "./state";

/** A file that cannot be replayed as asked (missing, unreadable header, state of other settings): exit 2. */
export class InputError extends Error {
  override readonly name = "InputError";
}

export interface PreparedJob {
  job: ReplayJob;
  parsed: ParsedCsv;
  /** The state came from an earlier run. */
  resumed: boolean;
}

/**
 * Reads and parses one file and finds its state: the saved one (unless `restart`), or a new one
 * holding the app's current tick count of the symbol, which the report and a resume compare with.
 */
export async function prepareJob(
  spec: ReplayFileSpec,
  options: {
    stateDir: string;
    restart: boolean;
    adjusted: boolean;
    baseUrl: string;
    client: GatewayClient;
    log: (line: string) => void;
  },
): Promise<PreparedJob> {
  let content: Buffer;
  try {
    content = fs.readFileSync(spec.file);
  } catch (err) {
    throw new InputError(
      `cannot read ${spec.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let parsed: ParsedCsv;
  try {
    parsed = parseDailyCsv(content.toString("utf8"));
  } catch (err) {
    if (err instanceof CsvFormatError) throw new InputError(`${spec.file}: ${err.message}`);
    throw err;
  }
  if (options.adjusted && !parsed.hasAdjClose) {
    throw new InputError(`${spec.file}: --adjusted needs an Adj Close column, and this file has none`);
  }
  const hash = contentHash(content);
  const file = statePath(options.stateDir, spec.symbol, hash);
  const settings = { adjusted: options.adjusted };

  let state: ReplayState | null = null;
  let resumed = false;
  if (!options.restart) {
    try {
      state = loadState(file);
    } catch (err) {
      if (err instanceof StateError) throw new InputError(err.message);
      throw err;
    }
  }
  if (state !== null) {
    resumed = true;
    if (state.settings.adjusted !== settings.adjusted) {
      throw new InputError(
        `${file} was saved by a replay ${state.settings.adjusted ? "with" : "without"} --adjusted; ` +
          `resume with the same options, or start over with --restart`,
      );
    }
    if (state.rows !== parsed.bars.length || state.symbol !== spec.symbol) {
      throw new InputError(
        `${file} does not match ${spec.file} (${state.rows} rows saved); start over with --restart`,
      );
    }
    if (state.url !== options.baseUrl) {
      options.log(
        `${spec.symbol}: note: the saved state was sent to ${state.url}, this run sends to ${options.baseUrl}`,
      );
      state.url = options.baseUrl;
    }
    if (state.baselineTicks === null && state.accepted === 0 && state.inDoubt === null) {
      // Nothing reached the app yet (the first run found the gateway down): its count is still the baseline.
      state.baselineTicks = await readBaseline(spec.symbol, options);
      saveState(file, state);
    }
  } else {
    const baselineTicks = await readBaseline(spec.symbol, options);
    state = newState({
      symbol: spec.symbol,
      file: path.resolve(spec.file),
      fileHash: hash,
      settings,
      url: options.baseUrl,
      rows: parsed.bars.length,
      baselineTicks,
    });
    if (state.rows === 0) state.completed = true;
    saveState(file, state);
  }

  const ticks = parsed.bars.map(bar => barToTick(bar, spec.symbol, options.adjusted));
  return {
    job: { symbol: spec.symbol, file: spec.file, bars: parsed.bars, ticks, state, statePath: file },
    parsed,
    resumed,
  };
}

/** The app's tick count of `symbol` before the replay sends anything; null when it cannot be read. */
async function readBaseline(
  symbol: string,
  options: { client: GatewayClient; log: (line: string) => void },
): Promise<number | null> {
  let count: number;
  try {
    count = await fetchTickCount(options.client, symbol);
  } catch (err) {
    options.log(`${symbol}: cannot read the app's tick count before the replay (${(err as Error).message})`);
    return null;
  }
  if (count > 0) {
    options.log(
      `${symbol}: the app already has ${formatCount(count)} ticks of ${symbol}; ` +
        `the replay adds to them (the indicators continue from them)`,
    );
  }
  return count;
}
