import type { StoredSignal } from "./delivery-store";
import type { WebhookSigner } from "./webhook-signature";

/** How one attempt at a delivery ended. */
export type DeliveryOutcome =
  /** Answered 2xx: delivered. */
  | { kind: "delivered"; status: number }
  /** Answered 410 Gone: the receiver wants no more deliveries. */
  | { kind: "gone"; status: number }
  /** Any other answer, a timeout or a network error: to be retried. */
  | { kind: "failed"; error: string };

/** One signal as a Standard Webhooks event: the same bytes on every attempt. */
export interface WebhookEvent {
  /** `webhook-id`: the signal's identity (symbol and seq), stable across retries and redeliveries. */
  id: string;
  body: string;
}

/** The event of a stored signal; `message` is its line for people. */
export function signalEvent(signal: StoredSignal, message: string): WebhookEvent {
  return {
    id: `sig_${signal.symbol}_${signal.seq}`,
    body: JSON.stringify({
      type: "signal.created",
      timestamp: new Date(signal.createdAt).toISOString(),
      data: {
        symbol: signal.symbol,
        seq: signal.seq,
        side: signal.side,
        rsi: signal.rsi,
        price: signal.price,
        timestamp: new Date(signal.timestamp * 1000).toISOString(),
        message,
      },
    }),
  };
}

/** POSTs signed events to one subscriber's URL. */
export class WebhookSender {
  constructor(
    private readonly signer: WebhookSigner,
    private readonly timeoutMs: number,
  ) {}

  async send(url: string, event: WebhookEvent): Promise<DeliveryOutcome> {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "stock-actors-notifier",
          ...this.signer.sign(event.id, event.body),
        },
        body: event.body,
        redirect: "manual",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      // The answer's body is of no use; reading it frees the connection for the next delivery.
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { kind: "delivered", status: res.status };
      if (res.status === 410) return { kind: "gone", status: res.status };
      return { kind: "failed", error: `answered ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why =
        e.name === "TimeoutError"
          ? `no answer within ${this.timeoutMs} ms`
          : (e.cause?.code ?? e.cause?.message ?? e.message);
      return { kind: "failed", error: why };
    }
  }
}
