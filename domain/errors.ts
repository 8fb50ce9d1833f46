/**
 * A small set of error classes in the kafkajs style: each says whether retrying can help,
 * so callers decide by type (`err.retriable`), never by parsing messages.
 */
export class StockError extends Error {
  readonly retriable: boolean;

  constructor(message: string, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable ?? false;
  }
}

/** A bad environment variable; start-up stops with this message. */
export class ConfigError extends StockError {}

/** One problem with one field of one input item. `index` is the item's position in a batch. */
export interface ValidationIssue {
  index: number;
  path: string;
  message: string;
}

/** Input that can never be accepted as it is; retrying the same input fails the same way. */
export class ValidationError extends StockError {
  constructor(
    message: string,
    readonly issues: ValidationIssue[],
  ) {
    super(message, { retriable: false });
  }
}

/** A dependency (Kafka, Postgres, Redis) did not answer in time; the same request may succeed later. */
export class UnavailableError extends StockError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { retriable: true, cause: options.cause });
  }
}

/** A snapshot write carried a stale partition epoch: another node owns the partition now. */
export class FencedError extends StockError {
  constructor(
    readonly partition: number,
    readonly epoch: number,
    readonly current?: number,
  ) {
    const now = current === undefined ? "" : ` (the partition's epoch is ${current})`;
    super(`partition ${partition}: epoch ${epoch} is stale${now}, another node owns the partition`, {
      retriable: false,
    });
  }
}

/** A message in the log that no actor can apply (malformed, unknown type); it goes to the dead-letter table. */
export class PoisonMessageError extends StockError {}

export function isRetriable(err: unknown): boolean {
  return err instanceof StockError ? err.retriable : false;
}
