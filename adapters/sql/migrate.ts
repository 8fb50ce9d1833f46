import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { projectRoot } from "../../lib/paths";
import type { SqlClient } from "./types";

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

const FILE_PATTERN = /^(\d{3,})_([\w-]+)\.sql$/;

/** Numbered SQL files (`migrations/001_init.sql`, ...), in version order. */
export function readMigrations(dir = path.join(projectRoot(), "migrations")): Migration[] {
  return fs
    .readdirSync(dir)
    .filter(f => FILE_PATTERN.test(f))
    .map(f => {
      const [, version, name] = FILE_PATTERN.exec(f)!;
      const sql = fs.readFileSync(path.join(dir, f), "utf8");
      return {
        version: Number(version),
        name,
        sql,
        checksum: createHash("sha256").update(sql).digest("hex"),
      };
    })
    .sort((a, b) => a.version - b.version);
}

/** Any constant works as long as every node uses the same one. */
const MIGRATION_LOCK = 7254001;

/**
 * Applies the pending migrations in order, each once, recorded in `schema_migrations` (the Flyway
 * convention). Everything runs in one transaction under a transaction-scoped advisory lock, so
 * many nodes may start at once: one applies, the others wait and then find nothing to do.
 * A recorded migration whose file changed since is refused rather than silently skipped.
 */
export async function migrate(db: SqlClient, migrations = readMigrations()): Promise<number[]> {
  return db.transaction(async tx => {
    await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await tx.query<{ version: number; checksum: string; name: string }>(
      "SELECT version, name, checksum FROM schema_migrations",
    );
    const applied = new Map(rows.map(r => [r.version, r]));
    const done: number[] = [];
    for (const m of migrations) {
      const seen = applied.get(m.version);
      if (seen) {
        if (seen.checksum !== m.checksum) {
          throw new Error(
            `migration ${m.version}_${m.name} changed after it was applied; add a new migration instead of editing it`,
          );
        }
        continue;
      }
      await tx.exec(m.sql);
      await tx.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
        m.version,
        m.name,
        m.checksum,
      ]);
      done.push(m.version);
    }
    return done;
  });
}
