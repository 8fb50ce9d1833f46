import fs from "node:fs";
import path from "node:path";

/**
 * The tables and views the numbered migrations create, read from their SQL text, and a check
 * that a dashboard query names only those relations and their columns. A small reader for the
 * DDL this project writes (CREATE TABLE/VIEW, ALTER TABLE ... ADD/DROP/RENAME COLUMN), not a
 * general SQL parser.
 */

export interface Relation {
  kind: "table" | "view";
  columns: Set<string>;
  /** Views: the string literals of the definition (the indicator names of stock_analysis). */
  literals: Set<string>;
}

export type Schema = Map<string, Relation>;

export function readSchema(dir: string): Schema {
  const schema: Schema = new Map();
  const files = fs
    .readdirSync(dir)
    .filter(f => /^\d+_.*\.sql$/.test(f))
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
  for (const file of files) {
    for (const statement of splitStatements(stripComments(fs.readFileSync(path.join(dir, file), "utf8")))) {
      applyStatement(schema, statement);
    }
  }
  return schema;
}

const name = (raw: string) =>
  (raw.startsWith('"') ? raw.slice(1, -1) : raw.toLowerCase()).replace(/^public\./, "");

function applyStatement(schema: Schema, sql: string): void {
  const table = /^CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?("[^"]+"|[\w.]+)\s*\(/i.exec(sql);
  if (table) {
    const columns = new Set<string>();
    for (const part of splitTopLevel(parenthesized(sql, table[0].length - 1), ",")) {
      const first = /^\s*("[^"]+"|\w+)/.exec(part)?.[1];
      if (!first || /^(PRIMARY|UNIQUE|CONSTRAINT|CHECK|FOREIGN|EXCLUDE|LIKE)$/i.test(first)) continue;
      columns.add(name(first));
    }
    schema.set(name(table[1]), { kind: "table", columns, literals: new Set() });
    return;
  }
  const view =
    /^CREATE\s+(?:OR\s+REPLACE\s+)?(?:MATERIALIZED\s+)?VIEW\s+("[^"]+"|[\w.]+)\s*(?:\(([^)]*)\))?\s+AS\s+([\s\S]*)$/i.exec(
      sql,
    );
  if (view) {
    const declared = view[2]?.split(",").map(c => name(c.trim()));
    schema.set(name(view[1]), {
      kind: "view",
      columns: new Set(declared ?? selectOutputColumns(view[3])),
      literals: new Set([...view[3].matchAll(/'((?:[^']|'')*)'/g)].map(m => m[1])),
    });
    return;
  }
  const alter = /^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?("[^"]+"|[\w.]+)\s+([\s\S]*)$/i.exec(sql);
  const relation = alter && schema.get(name(alter[1]));
  if (alter && relation) {
    for (const action of splitTopLevel(alter[2], ",")) {
      const add = /^\s*ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?("[^"]+"|\w+)/i.exec(action);
      const drop = /^\s*DROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?("[^"]+"|\w+)/i.exec(action);
      const rename = /^\s*RENAME\s+(?:COLUMN\s+)?("[^"]+"|\w+)\s+TO\s+("[^"]+"|\w+)/i.exec(action);
      if (add && !/^(CONSTRAINT|PRIMARY|UNIQUE|CHECK|FOREIGN)$/i.test(add[1]))
        relation.columns.add(name(add[1]));
      else if (drop && !/^CONSTRAINT$/i.test(drop[1])) relation.columns.delete(name(drop[1]));
      else if (rename) {
        relation.columns.delete(name(rename[1]));
        relation.columns.add(name(rename[2]));
      }
    }
  }
  const drop = /^DROP\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW)\s+(?:IF\s+EXISTS\s+)?("[^"]+"|[\w.]+)/i.exec(sql);
  if (drop) schema.delete(name(drop[1]));
}

/** Output names of a SELECT list: the alias, else the last part of a (qualified) column. */
function selectOutputColumns(select: string): string[] {
  const body = /^\s*SELECT\s+(?:DISTINCT\s+)?([\s\S]*)$/i.exec(select)?.[1] ?? "";
  const from = indexOfTopLevel(body, "FROM");
  return splitTopLevel(from < 0 ? body : body.slice(0, from), ",").map(item => {
    const alias = /\bAS\s+("[^"]+"|\w+)\s*$/i.exec(item) ?? /("[^"]+"|\w+)\s*$/.exec(item);
    if (!alias) throw new Error(`cannot name the view column "${item.trim()}"`);
    return name(alias[1]);
  });
}

/**
 * Drops line and block comments in one pass, so that a quote inside a comment (the "seed's" of
 * 001_init.sql) and a comment marker inside a string literal are both left alone.
 */
export function stripComments(sql: string): string {
  let out = "";
  let i = 0;
  while (i < sql.length) {
    if (sql.startsWith("--", i)) {
      const eol = sql.indexOf("\n", i);
      i = eol < 0 ? sql.length : eol;
    } else if (sql.startsWith("/*", i)) {
      const close = sql.indexOf("*/", i + 2);
      i = close < 0 ? sql.length : close + 2;
    } else if (sql[i] === "'" || sql[i] === '"') {
      const quote = sql[i];
      let j = i + 1;
      while (j < sql.length && !(sql[j] === quote && sql[j + 1] !== quote)) j += sql[j] === quote ? 2 : 1;
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else {
      out += sql[i++];
    }
  }
  return out;
}

function splitStatements(sql: string): string[] {
  return splitTopLevel(sql, ";")
    .map(s => s.trim())
    .filter(Boolean);
}

/** Splits on `separator` outside parentheses, quotes and string literals. */
function splitTopLevel(text: string, separator: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | null = null;
  let current = "";
  for (const ch of text) {
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === "(") depth += 1;
    else if (ch === ")") depth -= 1;
    else if (ch === separator && depth === 0) {
      parts.push(current);
      current = "";
      continue;
    }
    current += ch;
  }
  if (current.trim()) parts.push(current);
  return parts;
}

/** The text between the parenthesis at `open` and its match. */
function parenthesized(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "(") depth += 1;
    else if (text[i] === ")" && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error(`unbalanced parentheses in: ${text.slice(0, 80)}`);
}

/** Index of the keyword `word` outside parentheses, or -1. */
function indexOfTopLevel(text: string, word: string): number {
  let depth = 0;
  const pattern = new RegExp(`^${word}\\b`, "i");
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "(") depth += 1;
    else if (text[i] === ")") depth -= 1;
    else if (depth === 0 && !/\w/.test(text[i - 1] ?? " ") && pattern.test(text.slice(i))) return i;
  }
  return -1;
}

const KEYWORDS = new Set(
  (
    "select distinct from where and or not as order by group having limit offset asc desc nulls first " +
    "last in is null true false case when then else end join left right inner outer full cross lateral " +
    "on using between like ilike interval union all with filter over partition exists any some values " +
    "fetch next rows row only"
  ).split(" "),
);

export interface SqlReferences {
  relations: string[];
  problems: string[];
  /** String literals compared with a column: `column = 'literal'`, as [column, literal]. */
  comparisons: [string, string][];
}

/**
 * Checks a Grafana SQL query against the schema: every relation after FROM/JOIN exists, and
 * every other identifier that is not a keyword, a function, an output alias or a relation alias
 * is a column of one of them. Grafana macros ($__timeFilter(...) and friends) and dashboard
 * variables are taken out first; the column arguments of the macros stay and are checked.
 */
export function checkSql(sql: string, schema: Schema): SqlReferences {
  const problems: string[] = [];
  const comparisons: [string, string][] = [];
  let text = sql
    .replace(/\$__\w+/g, " ")
    .replace(/\$\{[^}]*\}/g, "''")
    .replace(/\$\w+/g, "''");
  text = stripComments(text);
  for (const m of text.matchAll(/("[^"]+"|\b\w+)\s*=\s*'((?:[^']|'')*)'/g))
    comparisons.push([name(m[1]), m[2]]);
  text = text.replace(/'(?:[^']|'')*'/g, "''").replace(/::\s*\w+(?:\s*\([^)]*\))?/g, " ");

  const relations: string[] = [];
  const aliases = new Set<string>();
  for (const m of text.matchAll(/\b(?:FROM|JOIN)\s+("[^"]+"|[\w.]+)(?:\s+(?:AS\s+)?("[^"]+"|\w+))?/gi)) {
    const relation = name(m[1]);
    relations.push(relation);
    if (!schema.has(relation)) problems.push(`unknown table or view "${relation}"`);
    if (m[2] && !KEYWORDS.has(m[2].toLowerCase())) aliases.add(name(m[2]));
  }
  if (relations.length === 0) problems.push("names no table or view");
  for (const m of text.matchAll(/\bAS\s+("[^"]+"|\w+)/gi)) aliases.add(name(m[1]));
  text = text.replace(/\bAS\s+("[^"]+"|\w+)/gi, " ");

  const columns = new Set(relations.flatMap(r => [...(schema.get(r)?.columns ?? [])]));
  for (const m of text.matchAll(/"[^"]+"|[A-Za-z_][\w$]*/g)) {
    const token = m[0];
    const after = text.slice(m.index + token.length).trimStart();
    if (!token.startsWith('"') && after.startsWith("(")) continue;
    const id = name(token);
    if (KEYWORDS.has(id) && !token.startsWith('"')) continue;
    if (relations.includes(id) || aliases.has(id)) continue;
    if (!columns.has(id))
      problems.push(`unknown column "${id}" (in ${relations.join(", ") || "no relation"})`);
  }
  return { relations, problems: [...new Set(problems)], comparisons };
}
