import type { ServiceBroker } from "moleculer";
import type { PartitionLag } from "../adapters/log/types";
import type { PartitionsReply } from "../services/contracts";
import type { SubscriberOverview } from "../runtime/notify/signal-notifier";
import { ActorDirectory } from "../services/gateway/actor-directory";

/**
 * A moleculer-repl custom command (moleculer-repl 0.8, given to the broker as
 * `replOptions.customCommands`). moleculer-repl hands `action` an object of the command's
 * arguments by name (`actor <symbol>`: `args.symbol`); Moleculer's own typings say `string[]`,
 * moleculer-repl's say `unknown`, so the arguments are read through `argument()`.
 */
export interface ReplCommand {
  command: string;
  description: string;
  alias?: string[];
  action: (broker: ServiceBroker, args: unknown) => Promise<void>;
}

/** A command's argument by name, as text; undefined when it was not given. */
function argument(args: unknown, name: string): string | undefined {
  if (typeof args !== "object" || args === null) return undefined;
  const value: unknown = Reflect.get(args, name);
  return value === undefined || value === null ? undefined : String(value);
}

type Print = (line: string) => void;

/** What a command works with: the broker it asks, the actor directory of that broker, and where it prints. */
interface ReplScope {
  broker: ServiceBroker;
  directory: () => ActorDirectory;
  print: Print;
}

/** One command: its moleculer-repl name and help, and what it does. */
interface ClusterCommand {
  command: string;
  description: string;
  run: (scope: ReplScope, args: unknown) => Promise<void>;
}

/** One row of `query.deadLetters`. */
interface DeadLetterRow {
  partition: number;
  offset: number;
  kind: string;
  key: string | null;
  reason: string;
  created_at: string | Date;
}

function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map(r => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map(r => r[i].length)));
  return cells
    .map(r =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function failure(err: unknown): string {
  const e = err as Error & { type?: string };
  return `error: ${e.message}${e.type ? ` (${e.type})` : ""}`;
}

/** `actors [node]`: the live actors of every actors node (or one), per partition. */
async function listActors({ broker, directory, print }: ReplScope, args: unknown): Promise<void> {
  const node = argument(args, "node");
  const nodes = node ? [node] : directory().actorNodes();
  if (nodes.length === 0) return print("no node runs the actors service");
  for (const nodeID of nodes) {
    try {
      const r = await broker.call<{ nodeID: string; partitions: Record<string, string[]> }, object>(
        "actors.list",
        {},
        { nodeID },
      );
      const rows = Object.entries(r.partitions).map(([p, symbols]) => [
        Number(p),
        symbols.length,
        symbols.slice(0, 12).join(" ") + (symbols.length > 12 ? " …" : ""),
      ]);
      const total = rows.reduce((n, row) => n + Number(row[1]), 0);
      print(`node ${r.nodeID}: ${total} live actor(s) in ${rows.length} partition(s)`);
      print(table(["partition", "actors", "symbols"], rows));
    } catch (err) {
      print(`node ${nodeID}: ${failure(err)}`);
    }
  }
}

/** `actor <symbol>`: one symbol's live state, from the node that owns it. */
async function showActor({ directory, print }: ReplScope, args: unknown): Promise<void> {
  const symbol = String(argument(args, "symbol"));
  try {
    const r = await directory().callOwner<{ nodeID: string; partition: number; state: unknown }>(
      "actors.state",
      symbol,
    );
    print(`${symbol} lives on node ${r.nodeID}, partition ${r.partition}`);
    print(JSON.stringify(r.state, null, 2));
  } catch (err) {
    print(failure(err));
  }
}

/** `partitions`: who owns which partition, the unowned ones, and the stalled ones. */
async function showPartitions({ directory, print }: ReplScope): Promise<void> {
  const replies: PartitionsReply[] = await directory().refresh();
  if (replies.length === 0) return print("no node runs the actors service");
  const owner = new Map<number, string>();
  for (const r of replies) for (const p of r.partitions) owner.set(p, r.nodeID);
  const count = replies[0].partitionCount;
  print(
    table(
      ["node", "partitions", "actors"],
      replies.map(r => [r.nodeID, r.partitions.join(",") || "-", r.actors]),
    ),
  );
  const unowned = Array.from({ length: count }, (_, p) => p).filter(p => !owner.has(p));
  print(unowned.length > 0 ? `unowned partitions: ${unowned.join(",")}` : `all ${count} partitions owned`);
  const stalled = replies.flatMap(r => (r.stalled ?? []).map(s => ({ nodeID: r.nodeID, ...s })));
  if (stalled.length === 0) return print("no partition stalled");
  print(`stalled partitions (waiting for a dependency; they resume by themselves):`);
  print(
    table(
      ["partition", "node", "waits for", "since", "attempts", "step", "last error"],
      stalled.map(s => [s.partition, s.nodeID, s.dependency, s.since, s.attempts, s.step, s.error]),
    ),
  );
}

/** `snapshot <symbol>`: a snapshot of the symbol's live actor, written now. */
async function takeSnapshot({ directory, print }: ReplScope, args: unknown): Promise<void> {
  const symbol = String(argument(args, "symbol"));
  try {
    const r = await directory().callOwner<{
      nodeID: string;
      partition: number;
      epoch: number;
      bytes: number;
    }>("actors.snapshot", symbol);
    print(
      `snapshot of ${symbol} written by ${r.nodeID}: partition ${r.partition}, epoch ${r.epoch}, ${r.bytes} bytes`,
    );
  } catch (err) {
    print(failure(err));
  }
}

/** `lag`: the consumer group's lag per partition, and in all. */
async function showLag({ broker, print }: ReplScope): Promise<void> {
  try {
    const rows = await broker.call<PartitionLag[], object>("actors.lag", {});
    print(
      table(
        ["partition", "committed", "end", "lag"],
        rows.map(r => [r.partition, r.committed, r.highWatermark, r.lag]),
      ),
    );
    print(`total lag: ${rows.reduce((n, r) => n + r.lag, 0)}`);
  } catch (err) {
    print(failure(err));
  }
}

/** `dead-letters [kind]`: the latest messages the actors did not apply, and why. */
async function showDeadLetters({ broker, print }: ReplScope, args: unknown): Promise<void> {
  const kind = argument(args, "kind");
  try {
    const rows = await broker.call<DeadLetterRow[], object>("query.deadLetters", kind ? { kind } : {});
    if (rows.length === 0) return print(kind ? `no dead letters of kind ${kind}` : "no dead letters");
    print(
      table(
        ["partition", "offset", "kind", "key", "at", "reason"],
        rows.map(r => [
          r.partition,
          r.offset,
          r.kind,
          r.key ?? "-",
          new Date(r.created_at).toISOString(),
          r.reason,
        ]),
      ),
    );
  } catch (err) {
    print(failure(err));
  }
}

/** `notifications`: where each webhook subscriber's deliveries stand. */
async function showNotifications({ broker, print }: ReplScope): Promise<void> {
  try {
    const { subscribers } = await broker.call<{ subscribers: SubscriberOverview[] }, object>(
      "notifier.status",
      {},
    );
    if (subscribers.length === 0) return print("no webhook subscriber configured");
    print(
      table(
        ["subscriber", "lag", "delivered", "dead", "state", "next attempt", "last error"],
        subscribers.map(s => [
          s.name,
          s.lag,
          s.delivered,
          s.deadLetters,
          s.disabled
            ? `disabled: ${s.disabled.reason ?? ""}`
            : s.attempts > 0
              ? `retrying (${s.attempts})`
              : "ok",
          s.nextAttempt ?? "-",
          s.lastError ?? "-",
        ]),
      ),
    );
  } catch (err) {
    print(failure(err));
  }
}

/** `redeliver <subscriber>`: the subscriber's dead letters sent again. */
async function redeliver({ broker, print }: ReplScope, args: unknown): Promise<void> {
  const subscriber = String(argument(args, "subscriber"));
  try {
    const r = await broker.call<{ redelivered: number; failed: number }, object>("notifier.redeliver", {
      subscriber,
    });
    print(`${subscriber}: ${r.redelivered} dead letter(s) redelivered, ${r.failed} failed again (kept)`);
  } catch (err) {
    print(failure(err));
  }
}

/** `enable-subscriber <subscriber>`: a subscriber disabled by a 410 receives again. */
async function enableSubscriber({ broker, print }: ReplScope, args: unknown): Promise<void> {
  const subscriber = String(argument(args, "subscriber"));
  try {
    await broker.call("notifier.enable", { subscriber });
    print(`${subscriber}: enabled; deliveries go on from its cursor`);
  } catch (err) {
    print(failure(err));
  }
}

const CLUSTER_COMMANDS: ClusterCommand[] = [
  {
    command: "actors [node]",
    description: "Live symbol actors per node and partition (all actors nodes, or one)",
    run: listActors,
  },
  {
    command: "actor <symbol>",
    description: "Live state of one symbol's actor, from the node that owns it",
    run: showActor,
  },
  {
    command: "partitions",
    description: "Which actors node owns which partition, with actor counts and stalled partitions",
    run: showPartitions,
  },
  {
    command: "snapshot <symbol>",
    description: "Force a snapshot of a symbol's live actor to the snapshot store now",
    run: takeSnapshot,
  },
  {
    command: "lag",
    description: "Consumer-group lag per partition (committed offset vs end of log)",
    run: showLag,
  },
  {
    command: "dead-letters [kind]",
    description:
      "The latest messages the actors did not apply, and why (kind: invalid, unappliable, refused)",
    run: showDeadLetters,
  },
  {
    command: "notifications",
    description: "Each webhook subscriber: lag, deliveries, dead letters, retries and the last error",
    run: showNotifications,
  },
  {
    command: "redeliver <subscriber>",
    description: "Send a webhook subscriber's dead letters again, each under its own webhook-id",
    run: redeliver,
  },
  {
    command: "enable-subscriber <subscriber>",
    description: "Let a webhook subscriber disabled by a 410 receive again",
    run: enableSubscriber,
  },
];

/**
 * Cluster debugging commands for `npm run repl`: they ask the actors nodes over Moleculer, the
 * same way the gateway does, so what the REPL shows is what the API serves.
 */
export function replCommands(print: Print = line => console.log(line)): ReplCommand[] {
  const directoryOf = new WeakMap<ServiceBroker, ActorDirectory>();
  const directory = (broker: ServiceBroker) => {
    let d = directoryOf.get(broker);
    if (!d) directoryOf.set(broker, (d = new ActorDirectory(broker)));
    return d;
  };

  // moleculer-repl starts each line as soon as it arrives; chaining keeps the output of piped
  // (scripted) input in the order the commands were given.
  let queue: Promise<void> = Promise.resolve();
  return CLUSTER_COMMANDS.map(({ command, description, run }) => ({
    command,
    description,
    action: (broker, args) =>
      (queue = queue
        .then(() => run({ broker, directory: () => directory(broker), print }, args))
        .catch(err => print(failure(err)))),
  }));
}
