/**
 * The benches' command lines, in any order. Each number field of a bench's defaults is an option
 * named after it (`latencySymbols` is `--latency-symbols 100`) taking a positive whole number,
 * each boolean field a switch (`--quick`); options with a value of their own kind (`--only bc`,
 * `--dir /path`) are given apart. An unknown option or a bad value stops a bench before it starts.
 */

/** `--name` and what its value sets (throwing on a value it does not take). */
export type ValueOptions<T> = Record<string, (value: string, options: T) => void>;

const flagOf = (field: string) => `--${field.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)}`;

/** `defaults` with the options of `argv` set. */
export function parseOptions<T extends object>(
  argv: readonly string[],
  defaults: T,
  values: ValueOptions<T> = {},
): T {
  const options = { ...defaults };
  const fields = options as Record<string, unknown>;
  const kinds = new Map<string, { field: string; kind: string }>();
  for (const [field, value] of Object.entries(defaults))
    if (typeof value === "number" || typeof value === "boolean")
      kinds.set(flagOf(field), { field, kind: typeof value });
  const known = () => [...kinds.keys(), ...Object.keys(values)].join(", ");
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const option = kinds.get(name);
    if (option?.kind === "boolean") {
      fields[option.field] = true;
      continue;
    }
    const value = argv[++i];
    if (option) fields[option.field] = positiveWholeNumber(name, value);
    else if (!Object.hasOwn(values, name)) throw new Error(`unknown option ${name} (known: ${known()})`);
    else if (value === undefined) throw new Error(`${name} needs a value`);
    else values[name](value, options);
  }
  return options;
}

function positiveWholeNumber(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} needs a positive whole number`);
  return n;
}
