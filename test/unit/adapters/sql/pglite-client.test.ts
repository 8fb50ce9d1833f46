import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

/**
 * The PGlite client (adapters/sql/pglite-client.ts), the embedded database: the same SQL and
 * migrations as the server, in this process. The checks run in a child process (see
 * pglite-client-child.ts: PGlite cannot load inside Jest's VM); this file checks what it saw.
 */

const ROOT = path.resolve(__dirname, "../../../..");
const TSX = path.join(ROOT, "node_modules/.bin/tsx");

type Failure = { message: string; code: string | null } | null;
interface Seen {
  inMemory: {
    int8: unknown[];
    inserted: number;
    updated: number;
    deleted: number;
    result: number;
    rolledBack: Failure;
    copyConflict: Failure;
    dataError: Failure;
    dataErrorSeen: boolean;
    rows: { k: string; n: number | null }[];
  };
  onDisk: { applied: number[]; appliedAgain: number[]; all: number[]; kept: unknown[] };
}

let dir = "";
let seen: Seen;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "pglite-client-"));
  const { stdout } = await promisify(execFile)(TSX, [path.join(__dirname, "pglite-client-child.ts"), dir], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  seen = JSON.parse(stdout) as Seen;
}, 120000);

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("PgliteClient", () => {
  it("reads int8 back as a number, and doubles as they were", () => {
    expect(seen.inMemory.int8).toEqual([{ k: "a", n: 9007199254740991, x: 0.1 + 0.2 }]);
  });

  it("counts the rows a statement wrote", () => {
    expect(seen.inMemory).toMatchObject({ inserted: 2, updated: 2, deleted: 2 });
  });

  it("commits a transaction that resolves, with its result, and rolls back one that throws", () => {
    expect(seen.inMemory.result).toBe(4);
    expect(seen.inMemory.rolledBack).toMatchObject({
      code: "23505",
      message: expect.stringMatching(/duplicate key/),
    });
    expect(seen.inMemory.rows.map(r => r.k)).not.toContain("gone");
  });

  it("appends rows with binary COPY; a row that breaks a constraint fails the whole COPY with its SQLSTATE", () => {
    expect(seen.inMemory.copyConflict).toMatchObject({ code: "23505" });
    expect(seen.inMemory.rows).toEqual([
      { k: "a", n: 9007199254740991 },
      { k: "b", n: 3 },
      { k: "c", n: 4 },
      { k: "copy-1", n: 11 },
      { k: "copy-2", n: null },
      { k: "tx", n: null },
    ]);
  });

  it("carries the SQLSTATE of a data error, as the server does, so isDataError reads it", () => {
    expect(seen.inMemory.dataError).toMatchObject({ code: "22003" });
    expect(seen.inMemory.dataErrorSeen).toBe(true);
  });

  it("runs the repository's migrations, and keeps what it stored in its directory across a reopen", () => {
    expect(seen.onDisk.applied).toEqual(seen.onDisk.all);
    expect(seen.onDisk.appliedAgain).toEqual([]);
    expect(seen.onDisk.kept).toEqual([{ k: "survives a reopen" }]);
  });
});
