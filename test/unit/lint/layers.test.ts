import { execFileSync } from "node:child_process";
import path from "node:path";

/**
 * The layering rules in eslint.config.mjs, checked against one import each: a rule that never
 * fires would let the layers erode without anyone noticing. ESLint loads its ESM config with a
 * dynamic import, which Jest's VM cannot do, so one child process lints every case.
 */
const ROOT = path.resolve(__dirname, "../../..");

const LINT_CASES = `
const { ESLint } = require("eslint");
const path = require("node:path");
(async () => {
  const eslint = new ESLint({ cwd: process.cwd() });
  const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
  const out = [];
  for (const [file, source] of cases) {
    const [r] = await eslint.lintText(source + "\\nexport {};\\n", { filePath: path.join(process.cwd(), file) });
    out.push(r.messages.filter(m => m.ruleId === "no-restricted-imports").map(m => m.message));
  }
  process.stdout.write(JSON.stringify(out));
})().catch(err => { console.error(err); process.exit(1); });
`;

function lintAll(cases: [string, string][]): Map<string, string[]> {
  const output = execFileSync(process.execPath, ["-e", LINT_CASES], {
    cwd: ROOT,
    input: JSON.stringify(cases),
    encoding: "utf8",
  });
  const results = JSON.parse(output) as string[][];
  return new Map(cases.map(([file, source], i) => [`${file} ${source}`, results[i]]));
}

const BANNED: [string, string][] = [
  ["domain/x.ts", 'import { Kafka } from "kafkajs";'],
  ["domain/x.ts", 'import { connect } from "nats";'],
  ["domain/x.ts", 'import http from "node:http";'],
  ["domain/x.ts", 'import { readFileSync } from "node:fs";'],
  ["domain/x.ts", 'import type { Config } from "../lib/config";'],
  ["domain/indicators/x.ts", 'import type { SqlClient } from "../../adapters/sql/types";'],
  ["lib/x.ts", 'import type { Resources } from "../adapters/resources";'],
  ["lib/x.ts", 'import type { ServiceDeps } from "../services/contracts";'],
  ["lib/x.ts", 'import { createNode } from "../app/node";'],
  ["adapters/x.ts", 'import { ActorHost } from "../runtime/host/actor-host";'],
  ["adapters/log/x.ts", 'import type { ServiceDeps } from "../../services/contracts";'],
  ["runtime/x.ts", 'import type { ServiceDeps } from "../services/contracts";'],
  ["services/query.service.ts", 'import createActorsService from "./actors.service";'],
  ["services/gateway/live-hub.ts", 'import type { X } from "../notifier.service";'],
  ["services/x.service.ts", 'import { createNode } from "../app/node";'],
  ["bench/x.ts", 'import { freePort } from "../test/support/ports";'],
];

const ALLOWED: [string, string][] = [
  ["domain/x.ts", 'import { z } from "zod";'],
  ["domain/x.ts", 'import { StockError } from "./errors";'],
  ["lib/x.ts", 'import { TICKER_PATTERN } from "../domain/messages";'],
  ["adapters/x.ts", 'import type { Config } from "../lib/config";'],
  ["runtime/x.ts", 'import type { SqlClient } from "../adapters/sql/types";'],
  ["services/x.service.ts", 'import { ResultsStore } from "../runtime/store/results-store";'],
  ["services/x.service.ts", 'import type { ServiceDeps } from "./contracts";'],
  ["services/gateway/x.ts", 'import type { SignalNotification } from "../contracts";'],
  ["app/x.ts", 'import createQueryService from "../services/query.service";'],
  ["bench/x.ts", 'import { freePort } from "../lib/net";'],
];

let results: Map<string, string[]>;
beforeAll(() => {
  results = lintAll([...BANNED, ...ALLOWED]);
}, 60000);

describe("layering rules", () => {
  it.each(BANNED)("%s may not `%s`", (file, source) => {
    expect(results.get(`${file} ${source}`)).toHaveLength(1);
  });

  it.each(ALLOWED)("%s may `%s`", (file, source) => {
    expect(results.get(`${file} ${source}`)).toEqual([]);
  });
});
