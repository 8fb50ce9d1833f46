import type { SqlExecutor } from "../../../../adapters/sql/types";
import { column, storableText, timestamp, UnnestInsert } from "../../../../runtime/store/sql-rows";

/**
 * The store's statement builder: rows as one array per column, expanded with unnest, one
 * statement however many rows. That the statements run on Postgres is the results tables' and
 * writer's integration tests; this one checks the text and the parameters they are sent with.
 */

interface Row {
  symbol: string;
  ts: number;
  note: string | null;
}

/** An executor that keeps each statement and answers `answer`. */
function recordingExecutor(answer: Record<string, unknown>[] = []) {
  const sent: { text: string; params: unknown[] | undefined }[] = [];
  const tx: SqlExecutor = {
    query: async <T>(text: string, params?: unknown[]) => {
      sent.push({ text, params });
      return { rows: answer as T[], rowCount: answer.length };
    },
    exec: async () => undefined,
    copyFrom: async () => undefined,
  };
  return { tx, sent };
}

const COLUMNS = [
  { name: "symbol", type: "text", value: (r: Row) => r.symbol },
  { name: '"timestamp"', type: "float8", value: (r: Row) => r.ts, as: timestamp },
  { name: "note", type: "text", value: (r: Row) => storableText(r.note) },
];
const ROWS: Row[] = [
  { symbol: "AAPL", ts: 1_700_000_000.5, note: "a" },
  { symbol: "MSFT", ts: 1_700_000_001, note: null },
];

describe("UnnestInsert", () => {
  it("inserts all rows in one statement, one array per column, skipping rows whose key exists", async () => {
    const { tx, sent } = recordingExecutor();
    await new UnnestInsert<Row>("notes", COLUMNS, "symbol").insert(tx, ROWS, 5);
    expect(sent).toEqual([
      {
        text:
          'INSERT INTO notes (symbol, "timestamp", note) ' +
          'SELECT symbol, to_timestamp("timestamp"), note FROM unnest($1::text[], $2::float8[], $3::text[]) ' +
          'AS i(symbol, "timestamp", note) ON CONFLICT (symbol) DO NOTHING',
        params: [
          ["AAPL", "MSFT"],
          [1_700_000_000.5, 1_700_000_001],
          ["a", null],
        ],
      },
    ]);
  });

  it("adds the batch's partition for a table that records it, and returns the inserted keys when asked", async () => {
    const { tx, sent } = recordingExecutor([{ symbol: "MSFT" }]);
    const insert = new UnnestInsert<Row>("notes", COLUMNS, "symbol, note", true, true);
    expect(await insert.insert(tx, ROWS, 5)).toEqual([{ symbol: "MSFT" }]);
    expect(sent[0].text).toBe(
      'INSERT INTO notes (symbol, "timestamp", note, kafka_partition) ' +
        'SELECT symbol, to_timestamp("timestamp"), note, $4::integer FROM unnest($1::text[], $2::float8[], $3::text[]) ' +
        'AS i(symbol, "timestamp", note) ON CONFLICT (symbol, note) DO NOTHING RETURNING symbol, note',
    );
    expect(sent[0].params?.at(-1)).toBe(5);
  });

  it("sends nothing for no rows", async () => {
    const { tx, sent } = recordingExecutor();
    expect(await new UnnestInsert<Row>("notes", COLUMNS, "symbol").insert(tx, [], 0)).toEqual([]);
    expect(sent).toEqual([]);
  });
});

describe("column", () => {
  it("picks one value of each row, in the rows' order", () => {
    expect(column(ROWS, r => r.symbol)).toEqual(["AAPL", "MSFT"]);
    expect(column([], (r: Row) => r.ts)).toEqual([]);
  });
});

describe("storableText", () => {
  it("leaves text without NUL characters, and null, as they are", () => {
    expect(storableText(null)).toBeNull();
    expect(storableText("plain \ufffd text")).toBe("plain \ufffd text");
  });

  it("stores each NUL character as U+FFFD, which Postgres text can hold", () => {
    expect(storableText("\u0000a\u0000\u0000b")).toBe("\ufffda\ufffd\ufffdb");
  });
});
