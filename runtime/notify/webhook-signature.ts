import { Webhook } from "standardwebhooks";

/**
 * Standard Webhooks (https://www.standardwebhooks.com): every delivery carries `webhook-id`
 * (stable across retries, so a receiver can drop a repeat), `webhook-timestamp` (the attempt's
 * time, seconds, so a receiver can refuse a replayed request) and `webhook-signature`
 * (`v1,` + base64 HMAC-SHA256 of "id.timestamp.body" under the shared secret). The maintained
 * `standardwebhooks` package signs; receivers verify with the same package in their language.
 */
export interface SignedHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/** A secret as Standard Webhooks writes it: `whsec_` and the base64 of 24 to 64 random bytes. */
export const WEBHOOK_SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{32,88}={0,2}$/;

export class WebhookSigner {
  private readonly webhook: Webhook;

  constructor(secret: string) {
    if (!WEBHOOK_SECRET_PATTERN.test(secret))
      throw new RangeError("a webhook secret is whsec_ followed by the base64 of 24 to 64 random bytes");
    this.webhook = new Webhook(secret);
  }

  /** The headers of one attempt at delivering `body` as message `id`, at `at`. */
  sign(id: string, body: string, at: Date = new Date()): SignedHeaders {
    return {
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
      "webhook-signature": this.webhook.sign(id, at, body),
    };
  }
}
