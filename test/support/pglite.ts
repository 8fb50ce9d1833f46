import { migrate } from "../../adapters/sql/migrate";
import { PgliteClient } from "../../adapters/sql/pglite-client";

let shared: Promise<PgliteClient> | null = null;

/**
 * An empty, migrated PGlite for one scenario of a test runner process: one instance per process,
 * its schema dropped and made anew for each caller. Opening and closing several PGlite instances
 * in one process has crashed V8 on Node 24 while it freed their WebAssembly code ("Check failed:
 * jit_page_->allocations_.erase(addr) == 1"); the product runs one per process, and so do the
 * tests. Callers do not close it.
 */
export async function emptyPglite(): Promise<PgliteClient> {
  shared ??= PgliteClient.open("memory://");
  const sql = await shared;
  await sql.exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
  await migrate(sql);
  return sql;
}
