import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { readMigrations } from "../../../../adapters/sql/migrate";

/** Reading the numbered SQL files; applying them is tested on the real server (integration tier). */
describe("readMigrations", () => {
  let dir = "";
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "migrations-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("reads the numbered SQL files in version order, by number, with their names and checksums", () => {
    const files: Record<string, string> = {
      "010_later.sql": "CREATE TABLE c (k int);",
      "002_second-step.sql": "CREATE TABLE b (k int);",
      "001_init.sql": "CREATE TABLE a (k int);",
    };
    for (const [name, sql] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), sql);
    const sha = (sql: string) => createHash("sha256").update(sql).digest("hex");
    expect(readMigrations(dir)).toEqual([
      { version: 1, name: "init", sql: files["001_init.sql"], checksum: sha(files["001_init.sql"]) },
      {
        version: 2,
        name: "second-step",
        sql: files["002_second-step.sql"],
        checksum: sha(files["002_second-step.sql"]),
      },
      { version: 10, name: "later", sql: files["010_later.sql"], checksum: sha(files["010_later.sql"]) },
    ]);
  });

  it("leaves out files that are not numbered migrations", () => {
    for (const name of [
      "001_ok.sql",
      "1_short.sql",
      "002_notes.txt",
      "README.md",
      "003_bad name.sql",
      "004_x.sql.bak",
    ])
      fs.writeFileSync(path.join(dir, name), "SELECT 1;");
    expect(readMigrations(dir).map(m => `${m.version}_${m.name}`)).toEqual(["1_ok"]);
  });

  it("gives a changed file another checksum", () => {
    fs.writeFileSync(path.join(dir, "001_init.sql"), "CREATE TABLE a (k int);");
    const before = readMigrations(dir)[0].checksum;
    fs.writeFileSync(path.join(dir, "001_init.sql"), "CREATE TABLE a (k bigint);");
    expect(readMigrations(dir)[0].checksum).not.toBe(before);
  });

  it("finds the repository's migrations by default, numbered 1, 2, 3, ... without a gap or a repeat", () => {
    const versions = readMigrations().map(m => m.version);
    expect(versions.length).toBeGreaterThan(0);
    expect(versions).toEqual(versions.map((_, i) => i + 1));
  });
});
