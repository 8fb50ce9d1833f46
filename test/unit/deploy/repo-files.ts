import fs from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

/**
 * The project whose deployment files the checks read: this checkout, or DEPLOY_ROOT when set (the
 * mutation check of test/deploy-mutations points it at a scratch copy holding one mistake).
 */
export const ROOT = process.env.DEPLOY_ROOT
  ? path.resolve(process.env.DEPLOY_ROOT)
  : path.resolve(__dirname, "../../..");

/** Project-relative path with forward slashes, as the tests name files in their messages. */
export function rel(file: string): string {
  return path.relative(ROOT, file).split(path.sep).join("/");
}

export function readText(relPath: string): string {
  return fs.readFileSync(path.join(ROOT, relPath), "utf8");
}

/** Files under `dir` (recursively) whose name ends with one of `extensions`, sorted. */
export function listFiles(dir: string, extensions: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (extensions.some(ext => entry.name.endsWith(ext))) out.push(full);
    }
  };
  walk(dir);
  return out.sort();
}

export interface YamlDocument {
  file: string;
  index: number;
  value: unknown;
}

/** Every document of a YAML file; a syntax error throws, naming the file. */
export function readYamlDocuments(file: string): YamlDocument[] {
  const docs = parseAllDocuments(fs.readFileSync(file, "utf8"), { prettyErrors: true });
  const list = Array.isArray(docs) ? docs : [docs];
  return list.flatMap((doc, index) => {
    if (doc.errors.length > 0) {
      throw new Error(`${rel(file)} document ${index}: ${doc.errors.map(e => e.message).join("; ")}`);
    }
    const value: unknown = doc.toJS();
    return value === null || value === undefined ? [] : [{ file: rel(file), index, value }];
  });
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
