import path from "node:path";
import { HELP, parseReplayArgs, UsageError, type ReplayCliOptions } from "../replay/cli";
import { GatewayClient } from "../replay/client";
import { InputError, prepareJob, type PreparedJob } from "../replay/prepare";
import { formatCount, ProgressReporter } from "../replay/progress";
import { collectReports, formatReportTable, reportTargets } from "../replay/report";
import { runReplay, type JobResult } from "../replay/run";
import { describeRows } from "../replay/summary";

/** Paths under the working directory are shown relative to it: shorter, and what a user would type. */
const shown = (file: string) => {
  const relative = path.relative(process.cwd(), file);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
};

function describeStart(p: PreparedJob): string {
  const { job, parsed } = p;
  const { state } = job;
  const span =
    job.bars.length === 0
      ? "no rows"
      : `${formatCount(job.bars.length)} rows, ${job.bars[0].date} to ${job.bars[job.bars.length - 1].date}`;
  const lines = [`${job.symbol}: ${shown(job.file)}: ${span}; state ${shown(job.statePath)}`];
  if (parsed.reversed)
    lines.push(`${job.symbol}: the file lists the newest day first; replaying oldest first`);
  if (parsed.unreadable.length > 0) {
    lines.push(
      `${job.symbol}: ${formatCount(parsed.unreadable.length)} lines cannot be read (listed at the end)`,
    );
  }
  if (state.completed && state.inDoubt === null) {
    lines.push(
      p.target.kind === "unknown"
        ? `${job.symbol}: already replayed completely, says the state, but the app cannot tell whether it holds the rows`
        : `${job.symbol}: already replayed completely, and the app holds every row: nothing to send`,
    );
  } else if (p.resumed && state.position > 0) {
    lines.push(
      `${job.symbol}: resuming after line ${state.lastLine ?? "-"}: ${formatCount(state.position)} of ` +
        `${formatCount(state.rows)} rows done (${formatCount(state.accepted)} accepted, ${formatCount(state.rejectedCount)} rejected)`,
    );
  }
  return lines.join("\n");
}

function describeEnd(p: PreparedJob, result: JobResult): string[] {
  const { job, parsed } = p;
  const { state } = job;
  const out: string[] = [];
  const status =
    result.status === "completed"
      ? "done"
      : result.status === "failed"
        ? "stopped by a failure"
        : result.status;
  out.push(
    `${job.symbol}: ${status}: ${formatCount(state.position)} of ${formatCount(state.rows)} rows resolved, ` +
      `${formatCount(state.accepted)} accepted (${formatCount(result.acceptedThisRun)} by this run), ` +
      `${formatCount(state.rejectedCount)} rejected, ${formatCount(parsed.unreadable.length)} unreadable` +
      (state.lastLine === null ? "" : `; last line done ${state.lastLine}`),
  );
  for (const line of describeRows("could not be read", parsed.unreadable)) out.push(`${job.symbol}: ${line}`);
  for (const line of describeRows("rejected by the gateway", state.rejected, {
    total: state.rejectedCount,
  })) {
    out.push(`${job.symbol}: ${line}`);
  }
  if (state.uncertainRetries.length > 0) {
    const ranges = state.uncertainRetries.map(r =>
      r.firstLine === r.lastLine ? `${r.firstLine}` : `${r.firstLine}-${r.lastLine}`,
    );
    out.push(
      `${job.symbol}: lines ${ranges.slice(0, 8).join(", ")}${ranges.length > 8 ? ` and ${ranges.length - 8} more` : ""} ` +
        `were sent again after a request the gateway did not answer, under the same Idempotency-Key: it applies them once`,
    );
  }
  if (state.inDoubt !== null) {
    out.push(
      `${job.symbol}: lines ${state.inDoubt.firstLine}-${state.inDoubt.lastLine} are in doubt (${state.inDoubt.reason}); ` +
        `the next run asks the app whether they arrived`,
    );
  }
  return out;
}

/**
 * The end of a run: each file's summary, then (unless --no-report) the report of what the app
 * holds. A file that sent nothing to an app that could not be asked has nothing to wait for: the
 * replay says why and leaves it out, and the exit status is 1.
 */
async function finish(
  prepared: readonly PreparedJob[],
  results: readonly JobResult[],
  o: ReplayCliOptions & { client: GatewayClient; stop: AbortSignal; log: (line: string) => void },
): Promise<number> {
  let problems = false;
  prepared.forEach((p, i) => {
    for (const line of describeEnd(p, results[i])) console.error(line);
    if (p.parsed.unreadable.length > 0 || p.job.state.rejectedCount > 0) problems = true;
  });
  const failed = results.filter(r => r.status === "failed");
  const unfinished = results.filter(r => r.status !== "completed");
  if (unfinished.length > 0) {
    for (const f of failed) console.error(`replay: ${f.error}`);
    console.error(
      `replay: ${failed.length > 0 ? "stopped" : "interrupted"}; the state is saved in ` +
        `${unfinished.map(r => shown(r.job.statePath)).join(", ")}: run the same command again to resume` +
        (failed.length > 0 ? " once the gateway answers" : ""),
    );
    return failed.length > 0 ? 1 : 130;
  }
  const completedLines = results
    .filter(r => r.job.bars.length > 0)
    .map(r => `${r.job.symbol} lines ${r.job.bars[0].line}-${r.job.bars[r.job.bars.length - 1].line}`);
  if (completedLines.length > 0) console.error(`replay: every row resolved (${completedLines.join("; ")})`);

  const unverified = prepared.filter(
    (p, i) => p.target.kind === "unknown" && results[i].acceptedThisRun === 0,
  );
  for (const p of unverified) {
    const reason = p.target.kind === "unknown" ? p.target.reason : "";
    console.error(
      `${p.job.symbol}: cannot tell whether the app holds the rows the state says it was sent (${reason}); ` +
        `this run sent none, so there is nothing to wait for and no report: run again once the app answers`,
    );
  }
  const reported = prepared.map(p => p.job).filter(j => !unverified.some(p => p.job === j));
  if (!o.report || reported.length === 0) return problems || unverified.length > 0 ? 1 : 0;
  const rows = await collectReports(o.client, reportTargets(reported), {
    timeoutMs: o.reportTimeoutMs,
    signal: o.stop,
    log: o.log,
  });
  if (o.stop.aborted) return 130;
  process.stdout.write(`\n${formatReportTable(rows)}\n`);
  const incomplete = rows.some(r => r.report === null || !r.complete);
  return problems || incomplete || unverified.length > 0 ? 1 : 0;
}

/** The first Ctrl-C (or SIGTERM) stops after the request in flight, the second abandons it, the third exits. */
function onInterrupts(log: (line: string) => void): { stop: AbortController; abandon: AbortController } {
  const stop = new AbortController();
  const abandon = new AbortController();
  let interrupts = 0;
  const interrupt = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts === 1) {
      log(`\n${signal}: stopping after the request in flight and saving the state (again to abandon it)`);
      stop.abort();
    } else if (interrupts === 2) {
      log(`${signal}: abandoning the request in flight`);
      abandon.abort();
    } else {
      process.exit(130);
    }
  };
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);
  return { stop, abandon };
}

async function main(): Promise<number> {
  let command;
  try {
    command = parseReplayArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`replay: ${err.message}\nRun with --help for the options.`);
    return 2;
  }
  if (command.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const o = command.options;

  let reporter: ProgressReporter | null = null;
  const log = (line: string) => (reporter !== null ? reporter.log(line) : console.error(line));
  const { stop, abandon } = onInterrupts(log);

  const client = new GatewayClient(o.baseUrl, {
    token: o.token,
    timeoutMs: o.timeoutMs,
    maxSockets: o.concurrency + 1,
  });
  try {
    const prepared: PreparedJob[] = [];
    for (const spec of o.files) {
      try {
        prepared.push(await prepareJob(spec, { ...o, client, log }));
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        console.error(`replay: ${err.message}`);
        return 2;
      }
    }
    for (const p of prepared) log(describeStart(p));
    if (stop.signal.aborted) return 130;

    const jobs = prepared.map(p => p.job);
    const total = () => jobs.reduce((n, j) => n + j.state.rows, 0);
    const done = () => jobs.reduce((n, j) => n + j.state.position, 0);
    const rejected = () => jobs.reduce((n, j) => n + j.state.rejectedCount, 0);
    const label = jobs.length === 1 ? jobs[0].symbol : `${jobs.length} symbols`;
    reporter = new ProgressReporter(process.stderr, label);
    reporter.start(total(), done(), rejected());
    let results: JobResult[];
    try {
      results = await runReplay(jobs, {
        client,
        pacing: o.pacing,
        batchSize: o.batch,
        concurrency: o.concurrency,
        retries: o.retries,
        stop: stop.signal,
        abandon: abandon.signal,
        log,
        onProgress: () => reporter?.update(done(), rejected()),
      });
    } finally {
      reporter.stop();
      reporter = null;
    }

    return await finish(prepared, results, { ...o, client, stop: stop.signal, log });
  } finally {
    client.close();
  }
}

main().then(
  code => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? `replay: ${err.stack ?? err.message}` : err);
    process.exitCode = 1;
  },
);
