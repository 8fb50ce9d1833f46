import pg from "pg";
import { STACK } from "../../support/stack";

/** The server is there; the SQL client on it: test/integration/adapters/sql/postgres-client.test.ts. */
describe("Postgres (real)", () => {
  it("answers a query", async () => {
    const client = new pg.Client({ connectionString: STACK.postgresAdminUrl });
    await client.connect();
    try {
      expect((await client.query("SELECT 1 + 1 AS two")).rows).toEqual([{ two: 2 }]);
    } finally {
      await client.end();
    }
  });
});
