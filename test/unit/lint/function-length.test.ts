import fs from "node:fs";
import path from "node:path";
import { ESLint } from "eslint";

/**
 * The ratchet on function length (eslint.config.mjs): `npm run lint` holds every function outside
 * the tests to MAX_FUNCTION_LINES, except in the files of LONG_FUNCTION_EXCEPTIONS, and that list
 * only shrinks: a file in it whose functions all fit must leave it.
 */
const ROOT = path.resolve(__dirname, "../../..");

/** The two constants of eslint.config.mjs, read from its text (Jest's VM cannot import an ES module). */
function config(): { MAX_FUNCTION_LINES: number; LONG_FUNCTION_EXCEPTIONS: string[] } {
  const text = fs.readFileSync(path.join(ROOT, "eslint.config.mjs"), "utf8");
  const max = /export const MAX_FUNCTION_LINES = (\d+);/.exec(text);
  const list = /export const LONG_FUNCTION_EXCEPTIONS = (\[[^\]]*\]);/.exec(text);
  if (!max || !list)
    throw new Error("eslint.config.mjs no longer declares MAX_FUNCTION_LINES and LONG_FUNCTION_EXCEPTIONS");
  return { MAX_FUNCTION_LINES: Number(max[1]), LONG_FUNCTION_EXCEPTIONS: JSON.parse(list[1]) as string[] };
}

describe("function length", () => {
  it("lists as an exception only files that still hold a function over the limit", async () => {
    const { MAX_FUNCTION_LINES, LONG_FUNCTION_EXCEPTIONS } = config();
    const eslint = new ESLint({
      cwd: ROOT,
      overrideConfigFile: true,
      overrideConfig: [{ rules: { "max-lines-per-function": ["error", MAX_FUNCTION_LINES] } }],
    });
    for (const file of LONG_FUNCTION_EXCEPTIONS) {
      const [result] = await eslint.lintFiles([path.join(ROOT, file)]);
      const long = result.messages.filter(m => m.ruleId === "max-lines-per-function");
      expect({ file, stillLong: long.length > 0 }).toEqual({ file, stillLong: true });
    }
  });
});
