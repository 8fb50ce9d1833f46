import { partitionForKey } from "../../../../lib/partitioner";

/** What the crash test's child appends, shared by the child and the test that checks the log. */
export const TOPIC = "crash";
export const PARTITIONS = 3;
export const APPENDERS = 8;

/** Two keys per partition of three. */
const KEYS = ["AAPL", "AMZN", "NFLX", "MSFT", "TSLA", "INTC"];

export function keyOf(seq: number): string {
  return KEYS[seq % KEYS.length];
}

export function partitionOf(seq: number): number {
  return partitionForKey(keyOf(seq), PARTITIONS);
}

/** Lines of uneven length (up to ~600 bytes), so a kill lands anywhere in a line. */
export function valueOf(round: number, seq: number): string {
  return `${round}:${seq}:${"x".repeat((seq * 37) % 577)}`;
}

export function parseValue(value: string): { round: number; seq: number } {
  const [round, seq] = value.split(":").map(Number);
  if (valueOf(round, seq) !== value) throw new Error(`not a value the workload wrote: ${value.slice(0, 40)}`);
  return { round, seq };
}
