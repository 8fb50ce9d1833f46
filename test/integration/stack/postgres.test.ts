import { migrate, readMigrations } from "../../../adapters/sql/migrate";
import { PostgresClient } from "../../../adapters/sql/postgres-client";
import { freshDatabase } from "../../support/stack";

describe("Postgres (real)", () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const clients: PostgresClient[] = [];
  const client = () => {
    const c = new PostgresClient(db.url, 4);
    clients.push(c);
    return c;
  };

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

  it("applies the migrations once when several nodes start at the same time", async () => {
    const results = await Promise.all([client(), client(), client()].map(c => migrate(c)));
    const all = readMigrations().map(m => m.version);
    expect(results.flat().sort()).toEqual(all);
    const { rows } = await client().query<{ version: number }>(
      "SELECT version FROM schema_migrations ORDER BY version",
    );
    expect(rows.map(r => r.version)).toEqual(all);
    await expect(migrate(client())).resolves.toEqual([]);
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
});
