import { isDataError } from "../../../../adapters/sql/errors";
import { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { freePort } from "../../../../lib/net";
import { freshDatabase } from "../../../support/stack";

/** isDataError (adapters/sql/errors.ts) on the errors the real server raises. */
describe("isDataError", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let c: PostgresClient;
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (err: unknown) => err,
    );

  beforeAll(async () => {
    db = await freshDatabase();
    c = new PostgresClient(db.url, 2);
    await c.query("CREATE TABLE t (k varchar(3) PRIMARY KEY, n integer, at timestamptz)");
  });
  afterAll(async () => {
    await c.close();
    await db.drop();
  });

  it("is true for a value the column cannot hold, which fails the same way on every try", async () => {
    const errors = await Promise.all([
      failure(c.query("INSERT INTO t (k, n) VALUES ('a', $1)", [2 ** 40])),
      failure(c.query("INSERT INTO t (k) VALUES ('abcd')")),
      failure(c.query("INSERT INTO t (k, at) VALUES ('b', to_timestamp($1))", [1e20])),
    ]);
    expect(errors.map(e => (e as { code?: string }).code)).toEqual(["22003", "22001", "22008"]);
    for (const e of errors) expect(isDataError(e)).toBe(true);
  });

  it("is true for a data error thrown inside a transaction, and down a short cause chain", async () => {
    const inTransaction = await failure(
      c.transaction(async tx => {
        await tx.query("INSERT INTO t (k) VALUES ('c')");
        await tx.query("INSERT INTO t (k, n) VALUES ('d', $1)", [2 ** 40]);
      }),
    );
    expect(isDataError(inTransaction)).toBe(true);
    expect(
      isDataError(new Error("chunk failed", { cause: new Error("insert failed", { cause: inTransaction }) })),
    ).toBe(true);
  });

  it("is false for a key conflict, a bad statement and an unreachable server", async () => {
    await c.query("INSERT INTO t (k) VALUES ('dup')");
    const conflict = await failure(c.query("INSERT INTO t (k) VALUES ('dup')"));
    const syntax = await failure(c.query("INSERT INTO"));
    const port = await freePort();
    const away = new PostgresClient(`postgres://postgres@127.0.0.1:${port}/none`, 1);
    const outage = await failure(away.query("SELECT 1"));
    await away.close();
    expect([conflict, syntax].map(e => (e as { code?: string }).code)).toEqual(["23505", "42601"]);
    for (const e of [conflict, syntax, outage]) expect(isDataError(e)).toBe(false);
    expect(isDataError(undefined)).toBe(false);
  });
});
