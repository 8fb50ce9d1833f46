import { HELP, parseGeneratorArgs, UsageError } from "../generator/cli";
import { exitCodeFor, formatSummary, runGenerator } from "../generator/run";

async function main(): Promise<number> {
  let command;
  try {
    command = parseGeneratorArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`generator: ${err.message}\nRun with --help for the options.`);
    return 2;
  }
  if (command.help) {
    process.stdout.write(HELP);
    return 0;
  }

  const controller = new AbortController();
  let interrupts = 0;
  const interrupt = (signal: NodeJS.Signals) => {
    interrupts++;
    if (interrupts === 1) {
      console.error(`\n${signal}: stopping, waiting for requests in flight (again to quit at once)`);
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on("SIGINT", interrupt);
  process.on("SIGTERM", interrupt);

  const summary = await runGenerator({ ...command.options, signal: controller.signal });
  console.log(formatSummary(summary));
  return exitCodeFor(summary);
}

main().then(
  code => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? `generator: ${err.message}` : err);
    process.exitCode = 2;
  },
);
