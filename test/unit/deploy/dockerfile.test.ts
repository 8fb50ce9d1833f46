import fs from "node:fs";
import path from "node:path";
import vm from "node:vm";
import { loadConfig } from "../../../lib/config";
import {
  baseImageProblems,
  dockerIgnoreMatcher,
  parseDockerfile,
  type Instruction,
  type Stage,
} from "./dockerfile";
import { metricsEndpoint } from "./metric-series";
import { readText, ROOT } from "./repo-files";

/** Static checks of the Dockerfile and .dockerignore against package.json, tsconfig and the code. */

const stages = parseDockerfile(readText("Dockerfile"));
const runtime = stages[stages.length - 1];
const pkg = JSON.parse(readText("package.json")) as {
  engines: { node: string };
  scripts: Record<string, string>;
};
const tsconfig = JSON.parse(readText("tsconfig.json")) as {
  compilerOptions: { outDir: string; rootDir: string };
};
const buildConfig = JSON.parse(readText("tsconfig.build.json")) as { include: string[] };
const ignored = dockerIgnoreMatcher(readText(".dockerignore"));
const DEFAULTS = loadConfig({});

const all = (stage: Stage, keyword: string): Instruction[] =>
  stage.instructions.filter(i => i.keyword === keyword);
const runs = (stage: Stage) => all(stage, "RUN").map(i => i.args);
const stageNamed = (name: string | undefined) => stages.find(s => s.name === name);

/** WORKDIR in force at each instruction of a stage, to resolve relative COPY destinations. */
function copiesOf(stage: Stage): { source: string; dest: string; from?: string }[] {
  let workdir = "/";
  const out: { source: string; dest: string; from?: string }[] = [];
  for (const i of stage.instructions) {
    if (i.keyword === "WORKDIR") workdir = path.posix.resolve(workdir, i.args);
    if (i.keyword !== "COPY") continue;
    const parts = i.exec ?? i.args.split(/\s+/);
    const dest = path.posix.resolve(workdir, parts[parts.length - 1]);
    for (const source of parts.slice(0, -1)) {
      const into = parts.length > 2 || parts[parts.length - 1].endsWith("/");
      out.push({
        source,
        dest: into ? path.posix.join(dest, path.posix.basename(source)) : dest,
        from: i.flags.from,
      });
    }
  }
  return out;
}

/**
 * Runs the HEALTHCHECK's `node -e` script in a sandbox whose `http.get` answers `status`: the URL
 * it asked and the exit code it chose (none when it never exits).
 */
const EXIT = new Error("process.exit");
function stopsAtExit(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    if (err !== EXIT) throw err;
  }
}

async function runHealthcheck(
  script: string,
  env: Record<string, string>,
  status: number,
): Promise<{ url?: string; code?: number }> {
  const seen: { url?: string; code?: number } = {};
  let done: () => void = () => undefined;
  const finished = new Promise<void>(resolve => (done = resolve));
  const request = { on: () => request, setTimeout: () => request };
  const http = {
    get: (url: string, onResponse: (r: { statusCode: number }) => void) => {
      seen.url = url;
      setImmediate(() => stopsAtExit(() => onResponse({ statusCode: status })));
      return request;
    },
  };
  // process.exit ends the script where it is called: a sentinel thrown to the sandbox's caller.
  const exit = (code: number) => {
    seen.code ??= code;
    done();
    throw EXIT;
  };
  const require = (name: string) => {
    if (name === "http" || name === "node:http") return http;
    throw new Error(`the HEALTHCHECK requires ${name}`);
  };
  stopsAtExit(() => vm.runInNewContext(script, { process: { env, exit }, require }, { timeout: 1000 }));
  await Promise.race([finished, new Promise(resolve => setTimeout(resolve, 500))]);
  return seen;
}

function workdirOf(stage: Stage): string {
  return all(stage, "WORKDIR").reduce((dir, i) => path.posix.resolve(dir, i.args), "/");
}

describe("Dockerfile", () => {
  it("builds every stage on one node:<major>-bookworm-slim image pinned by digest, the major package.json's engines ask for", () => {
    const major = /^>=\s*(\d+)(\.\d+)*$/.exec(pkg.engines.node.trim())?.[1];
    expect({ engines: pkg.engines.node, major }).toEqual({
      engines: pkg.engines.node,
      major: expect.any(String),
    });
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(baseImageProblems(stages, major!)).toEqual([]);
  });

  it("compiles with the full dependency tree and ships production dependencies only", () => {
    const build = stages.find(s => runs(s).some(r => /\bnpm run build\b/.test(r)));
    expect(build).toBeDefined();
    expect(runs(build!).some(r => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r))).toBe(true);
    const runtimeModules = copiesOf(runtime).find(c => c.dest.endsWith("/node_modules"));
    const depsStage = runtimeModules ? stageNamed(runtimeModules.from) : runtime;
    expect(depsStage).toBeDefined();
    expect(runs(depsStage!).some(r => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
    expect(
      copiesOf(runtime)
        .filter(c => c.from === build!.name)
        .map(c => c.source),
    ).toEqual(["/app/dist"]);
  });

  it("starts what `npm start` starts, a compiled file whose TypeScript source exists", () => {
    const cmd = all(runtime, "CMD").at(-1)?.exec;
    expect(cmd).toEqual(["node", "--enable-source-maps", "dist/bin/start.js"]);
    expect(cmd!.join(" ")).toBe(pkg.scripts.start);
    const { outDir, rootDir } = tsconfig.compilerOptions;
    const compiled = cmd![cmd!.length - 1];
    const source = path.join(rootDir, path.relative(outDir, compiled)).replace(/\.js$/, ".ts");
    expect(fs.existsSync(path.join(ROOT, source))).toBe(true);
    expect(buildConfig.include).toContain(source.split(path.sep)[0]);
  });

  it("puts package.json, dist, migrations and public side by side, where lib/paths.ts finds the project root", () => {
    const home = workdirOf(runtime);
    const dests = copiesOf(runtime).map(c => c.dest);
    for (const item of ["package.json", "dist", "migrations", "public", "node_modules"]) {
      expect(dests).toContain(path.posix.join(home, item));
    }
    for (const dir of ["migrations", "public"]) expect(fs.existsSync(path.join(ROOT, dir))).toBe(true);
  });

  it("runs as a non-root user in production mode and exposes PORT and METRICS_PORT", () => {
    const user = all(runtime, "USER").at(-1)?.args ?? "root";
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(all(runtime, "ENV").map(i => i.args)).toContain("NODE_ENV=production");
    const exposed = all(runtime, "EXPOSE").flatMap(i => i.args.split(/\s+/).map(Number));
    expect(exposed.sort()).toEqual([DEFAULTS.port, DEFAULTS.metricsPort].sort());
  });

  it("has a HEALTHCHECK that runs node alone, with a script that compiles", () => {
    const check = all(runtime, "HEALTHCHECK").at(-1);
    expect(check?.exec?.slice(0, 2)).toEqual(["node", "-e"]);
    expect(() => new vm.Script(check!.exec![2])).not.toThrow();
  });

  it.each([
    ["a gateway node", "5999/healthz", { SERVICES: "gateway,ingest", PORT: "5999", METRICS_PORT: "3999" }],
    ["a node running every service", "5999/healthz", { PORT: "5999" }],
    ["an actors node", "3999/metrics", { SERVICES: "actors", PORT: "5999", METRICS_PORT: "3999" }],
    ["an actors node with the default METRICS_PORT", "3030/metrics", { SERVICES: "actors" }],
  ])("makes the HEALTHCHECK of %s ask port/path %s, healthy on 200 only", async (_what, target, env) => {
    const script = all(runtime, "HEALTHCHECK").at(-1)!.exec![2];
    const [port, route] = target.split("/");
    const expected = `http://127.0.0.1:${port}${route === "metrics" ? metricsEndpoint(DEFAULTS).path : "/healthz"}`;
    expect(await runHealthcheck(script, env, 200)).toEqual({ url: expected, code: 0 });
    expect(await runHealthcheck(script, env, 503)).toEqual({ url: expected, code: 1 });
  });

  it("counts a node with neither gateway nor metrics endpoint as healthy, asking nothing", async () => {
    const script = all(runtime, "HEALTHCHECK").at(-1)!.exec![2];
    expect(await runHealthcheck(script, { SERVICES: "actors", METRICS_PORT: "0" }, 200)).toEqual({
      code: 0,
    });
  });
});

describe(".dockerignore", () => {
  it("keeps local, built, secret and test-only files out of the build context", () => {
    for (const p of [
      "node_modules",
      "dist",
      ".git",
      ".stack",
      "data",
      "coverage",
      ".scratch",
      ".env",
      "npm-debug.log",
    ]) {
      expect({ path: p, ignored: ignored(p) }).toEqual({ path: p, ignored: true });
    }
  });

  it("keeps everything the build stage needs", () => {
    const needed = [
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "migrations/001_init.sql",
      "public/index.html",
      ...buildConfig.include.filter(i => !i.includes("*")),
      ...fs.readdirSync(ROOT).filter(f => f.endsWith(".ts")),
    ];
    for (const p of needed) expect({ path: p, ignored: ignored(p) }).toEqual({ path: p, ignored: false });
  });
});
