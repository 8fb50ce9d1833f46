/**
 * Mutation check of the deployment tests: `npm run test:deploy-mutations`.
 *
 * Copies the deployment files (Dockerfile, compose, k8s, grafana, the runbook) to a scratch folder
 * beside links to the rest of the project, then makes each mistake of ./mutations.ts there, one at
 * a time, and runs the deploy tests (test/unit/deploy/*.test.ts) against the copy (DEPLOY_ROOT). A
 * mistake no test catches is a survivor. The tests run in this process under a small stand-in for
 * jest's describe/it (with jest's own `expect`), so the heavy modules load once and the whole run
 * takes a minute or two; only the deploy test modules are loaded again for each mistake.
 *
 * Exit code 1 when a mistake survives without a reason in ACCEPTED_SURVIVORS, or when the
 * unmodified copy does not pass.
 */
import { expect } from "expect";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { ACCEPTED_SURVIVORS, MUTATIONS, type Mutation } from "./mutations";

const PROJECT = path.resolve(__dirname, "../..");
const TESTS_DIR = path.join(PROJECT, "test/unit/deploy");
/** What the mistakes edit: copied; everything else at the top level is linked. */
const COPIED = ["Dockerfile", ".dockerignore", "compose.yaml", "compose", "k8s", "grafana", "docs"];
const NOT_LINKED = new Set([".git", ".scratch", ".stack", "dist", "coverage", "data"]);
const TEST_TIMEOUT_MS = 30_000;

type TestFn = () => unknown;
interface TestCase {
  name: string;
  fn?: TestFn;
}

let collected: TestCase[] = [];
const names: string[] = [];

/** The parts of jest's globals the deploy tests use. */
function installGlobals(): void {
  const describe = (name: string, fn: () => void) => {
    names.push(name);
    try {
      fn();
    } finally {
      names.pop();
    }
  };
  const it = (name: string, fn: TestFn) => collected.push({ name: [...names, name].join(" › "), fn });
  it.skip = (name: string) => collected.push({ name: [...names, name].join(" › ") });
  it.each = (table: unknown[]) => (name: string, fn: (...args: unknown[]) => unknown) => {
    for (const row of table) {
      const args = Array.isArray(row) ? row : [row];
      let i = 0;
      const title = name.replace(/%[sdip]/g, () => String(args[i++]));
      it(title, () => fn(...args));
    }
  };
  Object.assign(globalThis, { describe, it, test: it, expect });
}

async function runCase(c: TestCase): Promise<string | null> {
  if (!c.fn) return null;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(c.fn),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS} ms`)), TEST_TIMEOUT_MS);
      }),
    ]);
    return null;
  } catch (err) {
    return `${c.name}: ${firstLine(err)}`;
  } finally {
    clearTimeout(timer);
  }
}

const firstLine = (err: unknown) =>
  (err instanceof Error ? err.message : String(err))
    .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "")
    .split("\n")
    .filter(l => l.trim())
    .slice(0, 3)
    .join(" | ");

/** Runs every deploy test file against `root`; returns the failures and the number of tests. */
async function runDeployTests(root: string): Promise<{ failures: string[]; tests: number }> {
  process.env.DEPLOY_ROOT = root;
  const load = createRequire(__filename);
  for (const key of Object.keys(load.cache)) if (key.startsWith(TESTS_DIR + path.sep)) delete load.cache[key];
  const files = fs
    .readdirSync(TESTS_DIR)
    .filter(f => f.endsWith(".test.ts"))
    .sort();
  const failures: string[] = [];
  let tests = 0;
  for (const file of files) {
    collected = [];
    try {
      load(path.join(TESTS_DIR, file));
    } catch (err) {
      failures.push(`${file} does not load: ${firstLine(err)}`);
      continue;
    }
    tests += collected.length;
    for (const c of collected) {
      const failure = await runCase(c);
      if (failure) failures.push(`${file} › ${failure}`);
    }
  }
  return { failures, tests };
}

function makeScratch(): string {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "stock-deploy-mutations-"));
  for (const entry of fs.readdirSync(PROJECT)) {
    if (NOT_LINKED.has(entry)) continue;
    const from = path.join(PROJECT, entry);
    const to = path.join(scratch, entry);
    if (COPIED.includes(entry)) fs.cpSync(from, to, { recursive: true });
    else fs.symlinkSync(from, to);
  }
  return scratch;
}

function mutate(text: string, m: Mutation): string {
  if (m.edit) return m.edit(text);
  const at = text.indexOf(m.from!);
  if (at < 0 || text.indexOf(m.from!, at + 1) >= 0)
    throw new Error(`mutation "${m.id}": "${m.from}" must occur exactly once in ${m.file}`);
  return text.slice(0, at) + m.to! + text.slice(at + m.from!.length);
}

async function main(): Promise<void> {
  installGlobals();
  const started = Date.now();
  const scratch = makeScratch();
  let exitCode = 0;
  try {
    const baseline = await runDeployTests(scratch);
    console.log(`baseline: ${baseline.tests} deploy tests on the unmodified copy (${scratch})`);
    if (baseline.failures.length > 0) {
      console.error(`the unmodified copy fails:\n  ${baseline.failures.join("\n  ")}`);
      process.exitCode = 1;
      return;
    }
    const survivors: Mutation[] = [];
    for (const [i, m] of MUTATIONS.entries()) {
      const file = path.join(scratch, m.file);
      const original = fs.readFileSync(file, "utf8");
      const mutated = mutate(original, m);
      if (mutated === original) throw new Error(`mutation "${m.id}" changes nothing`);
      fs.writeFileSync(file, mutated);
      try {
        const { failures } = await runDeployTests(scratch);
        const label = `[${String(i + 1).padStart(2)}/${MUTATIONS.length}] ${m.id} (${m.file})`;
        if (failures.length > 0) {
          console.log(`KILLED   ${label}\n         by ${failures.length} test(s), first: ${failures[0]}`);
        } else {
          survivors.push(m);
          console.log(`SURVIVED ${label}`);
        }
      } finally {
        fs.writeFileSync(file, original);
      }
    }
    const killed = MUTATIONS.length - survivors.length;
    const rate = ((100 * killed) / MUTATIONS.length).toFixed(1);
    console.log(
      `\nkill rate: ${killed}/${MUTATIONS.length} (${rate} %) in ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    for (const m of survivors) {
      const reason = ACCEPTED_SURVIVORS[m.id];
      console.log(reason ? `accepted survivor: ${m.id}: ${reason}` : `UNACCEPTED survivor: ${m.id}`);
      if (!reason) exitCode = 1;
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
    delete process.env.DEPLOY_ROOT;
  }
  process.exitCode = exitCode;
}

main().catch(err => {
  console.error(err);
  process.exitCode = 1;
});
