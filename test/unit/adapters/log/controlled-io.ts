import fs from "node:fs";
import type { CommitIo } from "../../../../adapters/log/embedded-log-files";

/** One turn of the event loop: what the embedded log waits before it commits a group. */
export const tick = () => new Promise<void>(resolve => setImmediate(resolve));

/** Real file writes whose syncs the test counts and can hold until it releases them. */
export class ControlledIo implements CommitIo {
  writes = 0;
  syncs = 0;
  holdSyncs = false;
  maxBytesPerWrite = Infinity;
  failSyncWith: Error | null = null;
  private held: (() => void)[] = [];

  async write(fd: number, data: Buffer): Promise<number> {
    this.writes++;
    return fs.writeSync(fd, data, 0, Math.min(data.length, this.maxBytesPerWrite));
  }

  async fdatasync(fd: number): Promise<void> {
    this.syncs++;
    if (this.failSyncWith) throw this.failSyncWith;
    fs.fdatasyncSync(fd);
    if (this.holdSyncs) await new Promise<void>(resolve => this.held.push(resolve));
  }

  async syncHeld(): Promise<void> {
    while (this.held.length === 0) await tick();
  }

  release(): void {
    for (const resume of this.held.splice(0)) resume();
  }
}

/** Whether `p` settled by the next turn of the event loop. */
export async function state(p: Promise<unknown>): Promise<"pending" | "resolved" | "rejected"> {
  const settled = p.then(
    () => "resolved" as const,
    () => "rejected" as const,
  );
  return Promise.race([settled, tick().then(() => "pending" as const)]);
}
