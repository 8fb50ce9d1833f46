import fs from "node:fs";
import { type CommitIo, EmbeddedLog } from "../../../../adapters/log/embedded-log";
import { APPENDERS, keyOf, PARTITIONS, partitionOf, TOPIC, valueOf } from "./crash-workload";

/**
 * The process embedded-log-crash.test.ts kills (it runs this file transpiled; by hand:
 * `npx tsx <this file> <dir> <round> [<tear after>]`). Opens the log in <dir> and appends without
 * pause from several concurrent appenders, printing `<partition> <offset> <value>` for each record
 * once its append is acknowledged.
 *
 * With <tear after>, the first write once that many records are acknowledged stops inside its
 * last line and never finishes, and the child prints `torn`: killed then, it leaves the torn
 * tail that a kill only rarely catches otherwise, since nearly all the time goes into fdatasync.
 */
const [dir, round, tearAfter] = process.argv.slice(2);
let acknowledged = 0;

const write: CommitIo["write"] = (fd, data) =>
  new Promise((resolve, reject) =>
    fs.write(fd, data, 0, data.length, null, (err, n) => (err ? reject(err) : resolve(n))),
  );

const tearing: CommitIo = {
  write: (fd, data) => {
    if (acknowledged < Number(tearAfter)) return write(fd, data);
    const lastLine = data.lastIndexOf(10, data.length - 2) + 1;
    const cut = lastLine + 1 + Math.floor(Math.random() * (data.length - 2 - lastLine));
    fs.writeSync(fd, data, 0, cut);
    process.stdout.write("torn\n");
    return new Promise<number>(() => undefined);
  },
  fdatasync: fd => new Promise((resolve, reject) => fs.fdatasync(fd, err => (err ? reject(err) : resolve()))),
};

const log = new EmbeddedLog(TOPIC, PARTITIONS, dir, {
  logger: { warn: message => process.stderr.write(`${message}\n`) },
  io: tearAfter === undefined ? undefined : tearing,
});
let seq = 0;

async function appender(): Promise<void> {
  for (;;) {
    const seqs = Array.from({ length: 1 + Math.floor(Math.random() * 40) }, () => seq++);
    const offsets = await log.append(seqs.map(s => ({ key: keyOf(s), value: valueOf(Number(round), s) })));
    acknowledged += seqs.length;
    // One write per batch; stdout is a pipe, written synchronously: printed means acknowledged.
    process.stdout.write(
      seqs.map((s, i) => `${partitionOf(s)} ${offsets[i]} ${valueOf(Number(round), s)}\n`).join(""),
    );
  }
}

for (let i = 0; i < APPENDERS; i++) void appender();
