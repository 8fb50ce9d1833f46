import type { PostgresClient } from "../../../adapters/sql/postgres-client";
import { IdempotencyKeys } from "../../../runtime/idempotency-keys";
import { migratedDatabases } from "./support/database";

/**
 * The gateway's key store on Postgres: what an Idempotency-Key says about a request, and which use
 * of the key it is. (POST /ingest answering by it is test/integration/ingest/idempotency.test.ts.)
 */

const fresh = migratedDatabases();
const TTL = 3_600_000;
let db: PostgresClient;
let keys: IdempotencyKeys;
beforeAll(async () => {
  ({ db } = await fresh());
  keys = new IdempotencyKeys(db, TTL);
});

/** Makes `key` as old as `ms`, as if it was taken that long ago. */
const age = (key: string, ms: number) =>
  db.query(
    "UPDATE idempotency_keys SET created_at = now() - make_interval(secs => $2::float8 / 1000) WHERE key = $1",
    [key, ms],
  );

describe("IdempotencyKeys", () => {
  it("takes a new key, then answers a repeat until its messages reached the log, then done", async () => {
    const first = await keys.claim("k-1", "sha-a", 3);
    expect(first.status).toBe("new");
    expect(await keys.claim("k-1", "sha-a", 3)).toEqual({ status: "repeat", use: first.use });
    await keys.complete("k-1");
    expect(await keys.claim("k-1", "sha-a", 3)).toEqual({ status: "done", use: first.use });
  });

  it("refuses the key with another body, as a conflict", async () => {
    const { use } = await keys.claim("k-2", "sha-a", 1);
    expect(await keys.claim("k-2", "sha-b", 1)).toEqual({ status: "conflict", use });
    await keys.complete("k-2");
    expect(await keys.claim("k-2", "sha-b", 1)).toEqual({ status: "conflict", use });
  });

  it("numbers uses from one sequence: a key taken over after its TTL gets a larger use than any before", async () => {
    const old = await keys.claim("k-3", "sha-a", 2);
    await keys.complete("k-3");
    const other = await keys.claim("k-4", "sha-a", 2);
    expect(other.use).toBeGreaterThan(old.use);
    await age("k-3", TTL + 1000);
    // Another body under the key is a new request now, not a conflict; its messages are not sent yet.
    const reused = await keys.claim("k-3", "sha-c", 5);
    expect(reused.status).toBe("new");
    expect(reused.use).toBeGreaterThan(other.use);
    expect(await keys.claim("k-3", "sha-c", 5)).toEqual({ status: "repeat", use: reused.use });
  });

  it("keeps a key younger than its TTL", async () => {
    const { use } = await keys.claim("k-5", "sha-a", 1);
    await age("k-5", TTL - 60_000);
    expect(await keys.claim("k-5", "sha-a", 1)).toEqual({ status: "repeat", use });
  });

  it("prunes the keys older than the TTL, and only those", async () => {
    await keys.claim("k-6", "sha-a", 1);
    await keys.claim("k-7", "sha-a", 1);
    await age("k-6", TTL + 1000);
    expect(await keys.prune()).toBe(1);
    const { rows } = await db.query<{ key: string }>(
      "SELECT key FROM idempotency_keys WHERE key IN ('k-6', 'k-7')",
    );
    expect(rows).toEqual([{ key: "k-7" }]);
  });
});
