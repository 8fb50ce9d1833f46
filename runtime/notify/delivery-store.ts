import type { SqlClient } from "../../adapters/sql/types";
import type { SignalSide } from "../../domain/signals";
import type { Signal } from "../../domain/symbol-actor";

/**
 * The SQL of signal deliveries: stored signals read as an outbox (table `signals`, in delivery
 * order), and each subscriber's cursor, lease and retry state (`notification_subscribers`), and
 * the deliveries that ran out of retries (`notification_dead_letters`). Every write of a
 * subscriber's state is fenced by its lease: a node that lost the lease changes nothing.
 */

/** A place in the delivery order: the inserting transaction, then the signal's id within it. */
export interface Cursor {
  /** xid8, as text. */
  tx: string;
  id: number;
}

/** A stored signal, with its place in the delivery order, as a delivery carries it. */
export interface StoredSignal extends Signal {
  id: number;
  /** The inserting transaction (xid8, as text). */
  tx: string;
  /** When the signal was stored (ms since the epoch). */
  createdAt: number;
}

/** A subscriber's delivery state, as the lease that took it saw it. */
export interface SubscriberState {
  name: string;
  url: string;
  cursor: Cursor;
  disabledAt: number | null;
  disabledReason: string | null;
  attempts: number;
  failingSince: number | null;
  nextAttemptAt: number | null;
  /** How long until the next attempt is due (ms, by Postgres' clock); 0 when it is. */
  waitMs: number;
  lastError: string | null;
  delivered: number;
  lastDeliveredAt: number | null;
}

const ms = (v: unknown): number | null =>
  v === null || v === undefined ? null : new Date(v as string).getTime();

interface SubscriberRow {
  name: string;
  url: string;
  cursor_tx: string;
  cursor_id: string | number;
  disabled_at: unknown;
  disabled_reason: string | null;
  attempts: number;
  failing_since: unknown;
  next_attempt_at: unknown;
  wait_ms: number | null;
  last_error: string | null;
  delivered: string | number;
  last_delivered_at: unknown;
}

const SUBSCRIBER_COLUMNS = `name, url, cursor_tx::text AS cursor_tx, cursor_id, disabled_at, disabled_reason, attempts,
  failing_since, next_attempt_at, greatest(0, extract(epoch FROM next_attempt_at - now()) * 1000)::float8 AS wait_ms,
  last_error, delivered, last_delivered_at`;

function subscriberOf(r: SubscriberRow): SubscriberState {
  return {
    name: r.name,
    url: r.url,
    cursor: { tx: r.cursor_tx, id: Number(r.cursor_id) },
    disabledAt: ms(r.disabled_at),
    disabledReason: r.disabled_reason,
    attempts: r.attempts,
    failingSince: ms(r.failing_since),
    nextAttemptAt: ms(r.next_attempt_at),
    waitMs: r.wait_ms ?? 0,
    lastError: r.last_error,
    delivered: Number(r.delivered),
    lastDeliveredAt: ms(r.last_delivered_at),
  };
}

/** A signal as the SELECTs below read it. */
interface SignalRow {
  id: string | number;
  tx: string;
  symbol: string;
  side: SignalSide;
  rsi: number;
  price: number;
  ts: number;
  seq: string | number;
  created_ms: number;
}

function signalOf(r: SignalRow): StoredSignal {
  return {
    id: Number(r.id),
    tx: r.tx,
    symbol: r.symbol,
    side: r.side,
    rsi: r.rsi,
    price: r.price,
    timestamp: r.ts,
    seq: Number(r.seq),
    createdAt: r.created_ms,
  };
}

export class DeliveryStore {
  constructor(private readonly db: SqlClient) {}

  /**
   * Registers a subscriber of the configuration, or updates its URL. A new one starts after the
   * last signal stored now (`from: "now"`), or before the first (`"start"`); an existing one
   * keeps its cursor.
   */
  async register(name: string, url: string, from: "now" | "start"): Promise<void> {
    await this.db.query(
      `INSERT INTO notification_subscribers (name, url, cursor_tx, cursor_id)
       SELECT $1, $2, coalesce(last.tx_id, '0'::xid8), coalesce(last.id, 0)
       FROM (SELECT 1) one
       LEFT JOIN (SELECT tx_id, id FROM signals WHERE $3 = 'now' ORDER BY tx_id DESC, id DESC LIMIT 1) last ON true
       ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url`,
      [name, url, from],
    );
  }

  /** Takes (or renews) the subscriber's lease for `owner`; null when another node holds it. */
  async lease(name: string, owner: string, seconds: number): Promise<SubscriberState | null> {
    const { rows } = await this.db.query<SubscriberRow>(
      `UPDATE notification_subscribers SET lease_owner = $2, lease_until = now() + make_interval(secs => $3)
       WHERE name = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())
       RETURNING ${SUBSCRIBER_COLUMNS}`,
      [name, owner, seconds],
    );
    return rows.length === 0 ? null : subscriberOf(rows[0]);
  }

  /** Gives the lease up (a stopping node), so another node takes over at once. */
  async release(name: string, owner: string): Promise<void> {
    await this.db.query(
      "UPDATE notification_subscribers SET lease_owner = NULL, lease_until = NULL WHERE name = $1 AND lease_owner = $2",
      [name, owner],
    );
  }

  /**
   * The next signals after `cursor` in delivery order, only of transactions older than every
   * transaction still running: no signal can commit later with a place before these.
   */
  async signalsAfter(cursor: Cursor, limit: number): Promise<StoredSignal[]> {
    const { rows } = await this.db.query<SignalRow>(
      `SELECT id, tx_id::text AS tx, symbol, side, rsi, price, extract(epoch FROM "timestamp")::float8 AS ts, seq,
              (extract(epoch FROM created_at) * 1000)::float8 AS created_ms
       FROM signals
       WHERE (tx_id, id) > ($1::xid8, $2::bigint) AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
       ORDER BY tx_id, id
       LIMIT $3`,
      [cursor.tx, cursor.id, limit],
    );
    return rows.map(signalOf);
  }

  /**
   * The subscriber moved past `cursor` (delivered, skipped by its filter, or dead-lettered),
   * having delivered `delivered` more; its retry state is cleared. False when the lease is lost.
   */
  async advance(name: string, owner: string, cursor: Cursor, delivered: number): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE notification_subscribers SET cursor_tx = $3::xid8, cursor_id = $4, attempts = 0, failing_since = NULL,
         next_attempt_at = NULL, delivered = delivered + $5,
         last_delivered_at = CASE WHEN $5 > 0 THEN now() ELSE last_delivered_at END
       WHERE name = $1 AND lease_owner = $2 AND (cursor_tx, cursor_id) <= ($3::xid8, $4::bigint)`,
      [name, owner, cursor.tx, cursor.id, delivered],
    );
    return rowCount === 1;
  }

  /**
   * An attempt failed: the next one waits `delayMs`. Returns the failed attempts at this signal so
   * far and how long it has been failing (ms, by Postgres' clock); null when the lease is lost.
   */
  async failed(
    name: string,
    owner: string,
    error: string,
    delayMs: number,
  ): Promise<{ attempts: number; failingFor: number } | null> {
    const { rows } = await this.db.query<{ attempts: number; failing_for: number }>(
      `UPDATE notification_subscribers SET attempts = attempts + 1, failing_since = coalesce(failing_since, now()),
         next_attempt_at = now() + make_interval(secs => $4::float8 / 1000), last_error = $3
       WHERE name = $1 AND lease_owner = $2
       RETURNING attempts, (extract(epoch FROM now() - failing_since) * 1000)::float8 AS failing_for`,
      [name, owner, error.slice(0, 1000), delayMs],
    );
    return rows.length === 0 ? null : { attempts: rows[0].attempts, failingFor: rows[0].failing_for };
  }

  /** The receiver answered 410 Gone: no more deliveries until an operator enables it again. */
  async disable(name: string, owner: string, reason: string): Promise<void> {
    await this.db.query(
      `UPDATE notification_subscribers SET disabled_at = now(), disabled_reason = $3, last_error = $3
       WHERE name = $1 AND lease_owner = $2`,
      [name, owner, reason],
    );
  }

  async enable(name: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE notification_subscribers SET disabled_at = NULL, disabled_reason = NULL, attempts = 0,
         failing_since = NULL, next_attempt_at = NULL
       WHERE name = $1`,
      [name],
    );
    return rowCount === 1;
  }

  /** A delivery ran out of retries: kept as a dead letter, to be redelivered by hand. */
  async deadLetter(subscriber: string, signal: StoredSignal, attempts: number, error: string): Promise<void> {
    await this.db.query(
      `INSERT INTO notification_dead_letters (subscriber, signal_id, symbol, seq, attempts, last_error)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (subscriber, signal_id) DO UPDATE
         SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, failed_at = now(), redelivered_at = NULL`,
      [subscriber, signal.id, signal.symbol, signal.seq, attempts, error.slice(0, 1000)],
    );
  }

  /** Dead letters of `subscriber` not redelivered yet, oldest first, with their signals. */
  async deadLetters(
    subscriber: string,
    limit: number,
  ): Promise<(StoredSignal & { attempts: number; lastError: string })[]> {
    const { rows } = await this.db.query<SignalRow & { attempts: number; last_error: string }>(
      `SELECT s.id, s.tx_id::text AS tx, s.symbol, s.side, s.rsi, s.price, extract(epoch FROM s."timestamp")::float8 AS ts,
              s.seq, (extract(epoch FROM s.created_at) * 1000)::float8 AS created_ms, d.attempts, d.last_error
       FROM notification_dead_letters d JOIN signals s ON s.id = d.signal_id
       WHERE d.subscriber = $1 AND d.redelivered_at IS NULL
       ORDER BY s.tx_id, s.id
       LIMIT $2`,
      [subscriber, limit],
    );
    return rows.map(r => ({ ...signalOf(r), attempts: r.attempts, lastError: r.last_error }));
  }

  async redelivered(subscriber: string, signalId: number): Promise<void> {
    await this.db.query(
      "UPDATE notification_dead_letters SET redelivered_at = now() WHERE subscriber = $1 AND signal_id = $2",
      [subscriber, signalId],
    );
  }

  /** Every subscriber's state, for `GET /api/notifications`: with its lag (signals after its cursor) and the oldest one's time. */
  async overview(): Promise<
    (SubscriberState & { lag: number; oldestUndeliveredAt: number | null; dead: number })[]
  > {
    const { rows } = await this.db.query<
      SubscriberRow & { lag: string | number; oldest: unknown; dead: string | number }
    >(
      `SELECT ${SUBSCRIBER_COLUMNS},
              (SELECT count(*) FROM signals s WHERE (s.tx_id, s.id) > (n.cursor_tx, n.cursor_id)) AS lag,
              (SELECT min(s.created_at) FROM signals s WHERE (s.tx_id, s.id) > (n.cursor_tx, n.cursor_id)) AS oldest,
              (SELECT count(*) FROM notification_dead_letters d WHERE d.subscriber = n.name AND d.redelivered_at IS NULL) AS dead
       FROM notification_subscribers n ORDER BY name`,
    );
    return rows.map(r => ({
      ...subscriberOf(r),
      lag: Number(r.lag),
      oldestUndeliveredAt: ms(r.oldest),
      dead: Number(r.dead),
    }));
  }
}
