import { Errors } from "moleculer";
import { z } from "zod";
import { TICKER_PATTERN } from "../domain/messages";

/**
 * Parameters of the read API (REST and Moleculer actions), validated in one place so every
 * caller gets the same clear 400: `{error, issues: [{path, message}]}`.
 */

const symbol = z
  .string()
  .regex(TICKER_PATTERN, { message: "must be an upper-case ticker such as AAPL, BRK.B or BF-B" });

/** A point in time: ISO 8601 (2026-11-26T10:00:00Z) or epoch seconds (1764151200). Parsed to epoch seconds. */
const instant = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const text = String(v).trim();
  const seconds = /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : Date.parse(text) / 1000;
  if (!Number.isFinite(seconds)) {
    ctx.addIssue({ code: "custom", message: "must be an ISO 8601 time or epoch seconds" });
    return z.NEVER;
  }
  if (seconds > 1e11) {
    ctx.addIssue({ code: "custom", message: "looks like milliseconds; use epoch seconds or ISO 8601" });
    return z.NEVER;
  }
  return seconds;
});

const limit = (max: number, fallback: number) =>
  z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > max) {
        ctx.addIssue({ code: "custom", message: `must be a whole number from 1 to ${max}` });
        return z.NEVER;
      }
      return n;
    })
    .default(fallback);

const fromBeforeTo = (p: { from?: number; to?: number }) =>
  p.from === undefined || p.to === undefined || p.from < p.to;
const rangeOrder = { message: "must be after from", path: ["to"] };

export const symbolParams = z.object({ symbol });
export const historyParams = z
  .object({ symbol, from: instant.optional(), to: instant.optional(), limit: limit(10000, 500) })
  .refine(fromBeforeTo, rangeOrder);
export const signalsParams = z
  .object({
    symbol: symbol.optional(),
    from: instant.optional(),
    to: instant.optional(),
    limit: limit(10000, 100),
  })
  .refine(fromBeforeTo, rangeOrder);
export const aggregatesParams = z
  .object({ symbol, from: instant.optional(), to: instant.optional() })
  .refine(fromBeforeTo, rangeOrder);

export const deadLetterParams = z.object({
  partition: z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) {
        ctx.addIssue({ code: "custom", message: "must be a partition number (0 or more)" });
        return z.NEVER;
      }
      return n;
    })
    .optional(),
  kind: z
    .enum(["invalid", "unappliable", "refused"], { error: 'must be "invalid", "unappliable" or "refused"' })
    .optional(),
  limit: limit(1000, 50),
});

export type HistoryParams = z.infer<typeof historyParams>;
export type DeadLetterParams = z.infer<typeof deadLetterParams>;
export type SignalsParams = z.infer<typeof signalsParams>;
export type AggregatesParams = z.infer<typeof aggregatesParams>;

/** Parses `input` or throws a 400 that names each bad parameter and why. */
export function parseParams<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map(i => ({
    path: i.path.map(String).join(".") || "(query)",
    message: i.message,
  }));
  throw new Errors.MoleculerClientError(
    `invalid parameters: ${issues.map(i => `${i.path} ${i.message}`).join("; ")}`,
    400,
    "INVALID_PARAMETERS",
    { issues },
  );
}
