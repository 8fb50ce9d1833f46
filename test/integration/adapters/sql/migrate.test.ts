import { createHash } from "node:crypto";
import { migrate, readMigrations, type Migration } from "../../../../adapters/sql/migrate";
import { PostgresClient } from "../../../../adapters/sql/postgres-client";
import { freshDatabase } from "../../../support/stack";

/** Applying migrations (adapters/sql/migrate.ts) on the real server, each test in a database of its own. */
describe("migrate", () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function database(): Promise<() => PostgresClient> {
    const db = await freshDatabase();
    cleanups.push(db.drop);
    return () => {
      const c = new PostgresClient(db.url, 4);
      cleanups.push(() => c.close());
      return c;
    };
  }

  const migration = (version: number, name: string, sql: string): Migration => ({
    version,
    name,
    sql,
    checksum: createHash("sha256").update(sql).digest("hex"),
  });
  const recorded = async (c: PostgresClient) =>
    (
      await c.query<{ version: number; name: string; checksum: string }>(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
      )
    ).rows;
  const tables = async (c: PostgresClient) =>
    (
      await c.query<{ name: string }>(
        "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
      )
    ).rows.map(r => r.name);

  it("applies the migrations once when several nodes start at the same time", async () => {
    const client = await database();
    const results = await Promise.all([client(), client(), client()].map(c => migrate(c)));
    const all = readMigrations().map(m => m.version);
    expect(results.flat().sort((a, b) => a - b)).toEqual(all);
    expect((await recorded(client())).map(r => r.version)).toEqual(all);
    await expect(migrate(client())).resolves.toEqual([]);
  });

  it("applies only the pending ones, in version order, recording each with its name and checksum", async () => {
    const c = (await database())();
    const first = migration(1, "a", "CREATE TABLE a (k int)");
    const second = migration(2, "b", "CREATE TABLE b (k int); INSERT INTO b VALUES (1)");
    const third = migration(3, "c", "ALTER TABLE b ADD COLUMN v text");
    expect(await migrate(c, [first])).toEqual([1]);
    expect(
      await migrate(
        c,
        [third, first, second].sort((x, y) => x.version - y.version),
      ),
    ).toEqual([2, 3]);
    expect(await recorded(c)).toEqual(
      [first, second, third].map(({ version, name, checksum }) => ({ version, name, checksum })),
    );
    expect(await tables(c)).toEqual(["a", "b", "schema_migrations"]);
  });

  it("refuses a recorded migration whose file changed since, naming it, and applies nothing after it", async () => {
    const c = (await database())();
    await migrate(c, [migration(1, "init", "CREATE TABLE a (k int)")]);
    await expect(
      migrate(c, [
        migration(1, "init", "CREATE TABLE a (k bigint)"),
        migration(2, "next", "CREATE TABLE b (k int)"),
      ]),
    ).rejects.toThrow(
      "migration 1_init changed after it was applied; add a new migration instead of editing it",
    );
    expect(await tables(c)).toEqual(["a", "schema_migrations"]);
  });

  it("applies none of a run in which one migration fails: they share one transaction", async () => {
    const c = (await database())();
    await expect(
      migrate(c, [
        migration(1, "fine", "CREATE TABLE a (k int)"),
        migration(2, "broken", "CREATE TABLE b (k no_such_type)"),
      ]),
    ).rejects.toThrow(/no_such_type/);
    expect(await tables(c)).toEqual([]);
    expect(await migrate(c, [migration(1, "fine", "CREATE TABLE a (k int)")])).toEqual([1]);
  });
});
