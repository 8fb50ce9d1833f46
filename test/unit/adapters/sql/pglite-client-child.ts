/**
 * Runs the PGlite client through what pglite-client.test.ts checks and prints what it saw as JSON.
 * PGlite loads its WebAssembly with a dynamic import, which Jest's VM cannot do, so the test runs
 * this in a child process (`tsx`). By hand: `npx tsx test/unit/adapters/sql/pglite-client-child.ts DIR`.
 */
import path from "node:path";
import { isDataError } from "../../../../adapters/sql/errors";
import { migrate, readMigrations } from "../../../../adapters/sql/migrate";
import { PgliteClient } from "../../../../adapters/sql/pglite-client";
import { copyBinary } from "../../../support/copy-binary";

const failure = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (err: unknown) => ({ message: (err as Error).message, code: (err as { code?: unknown }).code ?? null }),
  );

async function inMemory() {
  const db = await PgliteClient.open("memory://");
  await db.exec(
    "CREATE TABLE t (k text PRIMARY KEY, n bigint, x double precision); CREATE TABLE small (n integer)",
  );
  const int8 = await db.query("INSERT INTO t VALUES ('a', $1, $2) RETURNING k, n, x", [
    9007199254740991,
    0.1 + 0.2,
  ]);
  const inserted = (await db.query("INSERT INTO t (k, n) VALUES ('b', 2), ('c', 3)")).rowCount;
  const updated = (await db.query("UPDATE t SET n = n + 1 WHERE n < 10")).rowCount;
  await db.query("INSERT INTO small VALUES (1), (2), (3)");
  const deleted = (await db.query("DELETE FROM small WHERE n < 3")).rowCount;

  const result = await db.transaction(async tx => {
    await tx.query("INSERT INTO t (k) VALUES ('tx')");
    return (await tx.query<{ n: number }>("SELECT count(*)::int8 AS n FROM t")).rows[0].n;
  });
  const rolledBack = await failure(
    db.transaction(async tx => {
      await tx.query("INSERT INTO t (k) VALUES ('gone')");
      await tx.query("INSERT INTO t (k) VALUES ('gone')");
    }),
  );

  await db.copyFrom(
    "t",
    ["k", "n"],
    copyBinary([
      ["copy-1", 11],
      ["copy-2", null],
    ]),
  );
  const copyConflict = await failure(
    db.copyFrom(
      "t",
      ["k", "n"],
      copyBinary([
        ["copy-3", 13],
        ["a", 14],
      ]),
    ),
  );

  const dataError = await failure(db.query("INSERT INTO small VALUES ($1)", [2 ** 40]));
  let dataErrorSeen = false;
  await db
    .query("INSERT INTO small VALUES ($1)", [2 ** 40])
    .catch((err: unknown) => (dataErrorSeen = isDataError(err)));

  const rows = (await db.query("SELECT k, n FROM t ORDER BY k")).rows;
  await db.close();
  await db.close();
  return {
    int8: int8.rows,
    inserted,
    updated,
    deleted,
    result,
    rolledBack,
    copyConflict,
    dataError,
    dataErrorSeen,
    rows,
  };
}

async function onDisk(dir: string) {
  const first = await PgliteClient.open(dir);
  const applied = await migrate(first);
  await first.query("CREATE TABLE kept (k text)");
  await first.query("INSERT INTO kept VALUES ('survives a reopen')");
  await first.close();
  const second = await PgliteClient.open(dir);
  const appliedAgain = await migrate(second);
  const kept = (await second.query("SELECT k FROM kept")).rows;
  await second.close();
  return { applied, appliedAgain, all: readMigrations().map(m => m.version), kept };
}

async function main(dir: string) {
  return { inMemory: await inMemory(), onDisk: await onDisk(path.join(dir, "pglite")) };
}

main(process.argv[2]).then(
  out => process.stdout.write(JSON.stringify(out)),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
