import fs from "node:fs";
import path from "node:path";
import type { GatewayClient } from "./client";
import { barToTick, CsvFormatError, parseDailyCsv, type ParsedCsv } from "./csv";
import type { ReplayFileSpec } from "./cli";
import type { ReplayJob } from "./run";
import { checkTarget, startFromTarget, type TargetCheck } from "./target";
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
  /** What the app said it holds of the symbol, against the state. */
  target: TargetCheck;
}

/**
 * Reads and parses one file and finds its state: the saved one (unless `restart`), or a new one
 * holding the app's current tick count of the symbol, which the report and a resume compare with.
 * Either is then held against what the app holds (replay/target.ts): the app decides.
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
    /** How long the app's count must stay put to be final (default 2 s). */
    settleMs?: number;
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
  if (!options.restart) {
    try {
      state = loadState(file);
    } catch (err) {
      if (err instanceof StateError) throw new InputError(err.message);
      throw err;
    }
  }
  if (state !== null) checkSavedState(state, spec, parsed, file, options);
  const resumed = state !== null;
  state ??= newState({
    symbol: spec.symbol,
    file: path.resolve(spec.file),
    fileHash: hash,
    settings,
    url: options.baseUrl,
    rows: parsed.bars.length,
    baselineTicks: null,
  });

  const ticks = parsed.bars.map(bar => barToTick(bar, spec.symbol, options.adjusted));
  const job: ReplayJob = {
    symbol: spec.symbol,
    file: spec.file,
    bars: parsed.bars,
    ticks,
    state,
    statePath: file,
  };
  // Nothing reached an app yet (or the first run found the gateway down): the app's count is the baseline.
  const fresh = !resumed || (state.baselineTicks === null && state.accepted === 0 && state.inDoubt === null);
  const target = fresh ? await startFromTarget(job, options) : await checkTarget(job, file, options);
  if (state.rows === 0) state.completed = true;
  if (fresh || target.kind === "rewound") saveState(file, state);
  return { job, parsed, resumed, target };
}

/** A saved state must be of this file and these settings; a state of another URL is only noted. */
function checkSavedState(
  state: ReplayState,
  spec: ReplayFileSpec,
  parsed: ParsedCsv,
  file: string,
  options: { adjusted: boolean; baseUrl: string; log: (line: string) => void },
): void {
  if (state.settings.adjusted !== options.adjusted) {
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
}
