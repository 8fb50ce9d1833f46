import pg from "pg";
import { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { StockError, UnavailableError } from "../../../../domain/errors";
import { freePort } from "../../../../lib/net";
import { copyBinary } from "../../../support/copy-binary";
import { freshDatabase } from "../../../support/stack";

/** The Postgres client (adapters/sql/postgres-client.ts) on the real server, in a database of its own. */
describe("PostgresClient", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const clients: PostgresClient[] = [];
  const client = (poolSize = 4) => {
    const c = new PostgresClient(db.url, poolSize);
    clients.push(c);
    return c;
  };
  const backendPid = async (c: PostgresClient) =>
    (await c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    await Promise.all(clients.map(c => c.close()));
    await db.drop();
  });

  it("round-trips a row, with int8 read back as a number", async () => {
    const c = client();
    await c.query("CREATE TABLE smoke (k text PRIMARY KEY, n bigint, x double precision)");
    await c.query("INSERT INTO smoke VALUES ($1, $2, $3)", ["a", 9007199254740991, 0.1 + 0.2]);
    const { rows } = await c.query<{ k: string; n: number; x: number }>("SELECT k, n, x FROM smoke");
    expect(rows).toEqual([{ k: "a", n: 9007199254740991, x: 0.1 + 0.2 }]);
  });

  it("counts the rows a statement wrote, and runs a script of several statements", async () => {
    const c = client();
    await c.exec("CREATE TABLE counted (k text PRIMARY KEY, n bigint); INSERT INTO counted VALUES ('a', 1)");
    expect((await c.query("INSERT INTO counted VALUES ('b', 2), ('c', 3)")).rowCount).toBe(2);
    expect((await c.query("UPDATE counted SET n = n + 1 WHERE n >= 2")).rowCount).toBe(2);
    expect((await c.query("SELECT k, n FROM counted ORDER BY k")).rows).toEqual([
      { k: "a", n: 1 },
      { k: "b", n: 3 },
      { k: "c", n: 4 },
    ]);
  });

  it("commits a transaction that resolves, and gives back its result", async () => {
    const c = client();
    await c.query("CREATE TABLE tx_commit (k text PRIMARY KEY)");
    const result = await c.transaction(async tx => {
      await tx.query("INSERT INTO tx_commit VALUES ('a'), ('b')");
      return (await tx.query<{ n: number }>("SELECT count(*)::int8 AS n FROM tx_commit")).rows[0].n;
    });
    expect(result).toBe(2);
    expect((await client().query("SELECT k FROM tx_commit ORDER BY k")).rows).toEqual([
      { k: "a" },
      { k: "b" },
    ]);
  });

  it("rolls a failed transaction back", async () => {
    const c = client();
    await c.query("CREATE TABLE tx_smoke (k text PRIMARY KEY)");
    await expect(
      c.transaction(async tx => {
        await tx.query("INSERT INTO tx_smoke VALUES ('kept?')");
        await tx.query("INSERT INTO tx_smoke VALUES ('kept?')");
      }),
    ).rejects.toThrow(/duplicate key/);
    expect((await c.query("SELECT * FROM tx_smoke")).rows).toEqual([]);
  });

  it("passes a failure of the data on as the server's error, and keeps the connection for the next query", async () => {
    const c = client(1);
    await c.query("CREATE TABLE keep (k text PRIMARY KEY)");
    const pid = await backendPid(c);
    const failure = await c
      .transaction(async tx => {
        await tx.query("INSERT INTO keep VALUES ('a')");
        await tx.query("INSERT INTO keep VALUES ('a')");
      })
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(pg.DatabaseError);
    expect(failure).toMatchObject({ code: "23505" });
    expect(await backendPid(c)).toBe(pid);
  });

  it("passes the system's own errors thrown in a transaction on unchanged, after rolling it back", async () => {
    const c = client();
    await c.query("CREATE TABLE fenced (k text PRIMARY KEY)");
    const fence = new StockError("fenced: another node owns the partition");
    await expect(
      c.transaction(async tx => {
        await tx.query("INSERT INTO fenced VALUES ('a')");
        throw fence;
      }),
    ).rejects.toBe(fence);
    expect((await c.query("SELECT * FROM fenced")).rows).toEqual([]);
  });

  it("turns a connection the server ended mid-transaction into a retriable UnavailableError, and reconnects", async () => {
    const c = client(1);
    const admin = client(1);
    const failure = await c
      .transaction(async tx => {
        const pid = (await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;
        await admin.query("SELECT pg_terminate_backend($1)", [pid]);
        await tx.query("SELECT 1");
      })
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(UnavailableError);
    expect(failure).toMatchObject({ retriable: true });
    expect((failure as Error).message).toMatch(/^Postgres: /);
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  });

  it("appends rows with binary COPY; a row that breaks a constraint fails the whole COPY with its SQLSTATE", async () => {
    const c = client();
    await c.query("CREATE TABLE copied (k text PRIMARY KEY, n bigint)");
    await c.copyFrom(
      "copied",
      ["k", "n"],
      copyBinary([
        ["a", 1],
        ["b", null],
      ]),
    );
    await c.transaction(tx => tx.copyFrom("copied", ["n", "k"], copyBinary([[3, "c"]])));
    const duplicate = await c
      .copyFrom(
        "copied",
        ["k", "n"],
        copyBinary([
          ["d", 4],
          ["a", 5],
        ]),
      )
      .catch((err: unknown) => err);
    expect(duplicate).toMatchObject({ code: "23505" });
    expect((await c.query("SELECT k, n FROM copied ORDER BY k")).rows).toEqual([
      { k: "a", n: 1 },
      { k: "b", n: null },
      { k: "c", n: 3 },
    ]);
  });

  it("fails with a retriable UnavailableError when no server answers", async () => {
    const port = await freePort();
    const away = new PostgresClient(`postgres://postgres@127.0.0.1:${port}/none`, 1);
    try {
      for (const call of [() => away.query("SELECT 1"), () => away.transaction(async () => 1)]) {
        const failure = await call().catch((err: unknown) => err);
        expect(failure).toBeInstanceOf(UnavailableError);
        expect(failure).toMatchObject({ retriable: true });
        expect((failure as Error).message).toMatch(/^Postgres: .*ECONNREFUSED/);
      }
    } finally {
      await away.close();
    }
  });
});
