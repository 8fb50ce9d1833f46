import type { SqlClient } from "../adapters/sql/types";

/** What a request's Idempotency-Key says about it (see `IdempotencyKeys.claim`). */
export type KeyStatus =
  /** First seen (or last seen longer ago than the TTL): send its messages. */
  | "new"
  /** Seen with the same body, but its messages may not have reached the log: send them again (the actors apply them once). */
  | "repeat"
  /** Seen with the same body, and its messages reached the log: answer as the first time, send nothing. */
  | "done"
  /** Seen with another body: refuse. */
  | "conflict";

/**
 * The status, and which use of the key the request is: uses are numbered from one sequence, so
 * a key taken over after its TTL gets a larger number than any use before it. The messages carry
 * it (header `idempotency-use`), so the actors tell a new use of a key from a repeat of the old.
 */
export interface KeyClaim {
  status: KeyStatus;
  use: number;
}

/**
 * The keys of client requests sent with an `Idempotency-Key` header (table `idempotency_keys`),
 * shared by every gateway node through Postgres: each key with the SHA-256 of the body it came
 * with and whether its messages reached the log. Kept for `ttlMs` (24 h by default).
 */
export class IdempotencyKeys {
  constructor(
    private readonly db: SqlClient,
    private readonly ttlMs: number,
  ) {}

  /** Takes `key` for a body of `bodySha256` holding `messages` messages, or says how it was seen before. */
  async claim(key: string, bodySha256: string, messages: number): Promise<KeyClaim> {
    for (;;) {
      // A key older than the TTL counts as new: it is taken over in the same statement.
      const taken = await this.db.query<{ use_id: string | number }>(
        `INSERT INTO idempotency_keys (key, body_sha256, messages) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE
           SET body_sha256 = EXCLUDED.body_sha256, messages = EXCLUDED.messages, created_at = now(),
               completed_at = NULL, use_id = nextval('idempotency_key_uses')
           WHERE idempotency_keys.created_at < now() - make_interval(secs => $4::float8 / 1000)
         RETURNING use_id`,
        [key, bodySha256, messages, this.ttlMs],
      );
      if (taken.rows.length > 0) return { status: "new", use: Number(taken.rows[0].use_id) };
      const { rows } = await this.db.query<{
        body_sha256: string;
        completed: boolean;
        use_id: string | number;
      }>(
        "SELECT body_sha256, completed_at IS NOT NULL AS completed, use_id FROM idempotency_keys WHERE key = $1",
        [key],
      );
      // Pruned between the two statements: take it again.
      if (rows.length === 0) continue;
      const use = Number(rows[0].use_id);
      if (rows[0].body_sha256 !== bodySha256) return { status: "conflict", use };
      return { status: rows[0].completed ? "done" : "repeat", use };
    }
  }

  /** The key's messages reached the log. */
  async complete(key: string): Promise<void> {
    await this.db.query("UPDATE idempotency_keys SET completed_at = now() WHERE key = $1", [key]);
  }

  /** Forgets keys older than the TTL; returns how many. */
  async prune(): Promise<number> {
    const { rowCount } = await this.db.query(
      "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1::float8 / 1000)",
      [this.ttlMs],
    );
    return rowCount;
  }
}
