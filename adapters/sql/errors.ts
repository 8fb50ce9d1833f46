/**
 * What a Postgres failure means, by its SQLSTATE (the server's and PGlite's errors carry it as
 * `code`), in the style of kafkajs's error predicates: callers decide by these, never by parsing
 * messages.
 */

function sqlState(err: unknown): string | null {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; depth++) {
    if (typeof e.code === "string") return e.code;
    e = e.cause as typeof e;
  }
  return null;
}

/**
 * A data exception (class 22: a value out of range for its column, a string it cannot hold, a
 * time out of range): the statement fails the same way on every try with the same data.
 */
export function isDataError(err: unknown): boolean {
  return sqlState(err)?.startsWith("22") ?? false;
}
