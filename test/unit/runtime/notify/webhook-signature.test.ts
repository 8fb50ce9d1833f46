import { Webhook } from "standardwebhooks";
import { WebhookSigner } from "../../../../runtime/notify/webhook-signature";

/** Standard Webhooks' own test vector (the spec's reference libraries test against it). */
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const BODY = '{"test": 2432232314}';
const AT = new Date(1614265330 * 1000);

describe("WebhookSigner", () => {
  it("signs as the Standard Webhooks test vector says", () => {
    expect(new WebhookSigner(SECRET).sign(ID, BODY, AT)).toEqual({
      "webhook-id": ID,
      "webhook-timestamp": "1614265330",
      "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    });
  });

  it("signs what a receiver verifies with the standardwebhooks package, and nothing else", () => {
    const headers = new WebhookSigner(SECRET).sign("sig_TSLA_812", '{"type":"signal.created"}');
    expect(new Webhook(SECRET).verify('{"type":"signal.created"}', { ...headers })).toEqual({
      type: "signal.created",
    });
    expect(() => new Webhook(SECRET).verify('{"type":"signal.forged"}', { ...headers })).toThrow();
  });

  it("refuses a secret that is not whsec_ and enough base64", () => {
    expect(() => new WebhookSigner("not-a-secret")).toThrow(/whsec_/);
    expect(() => new WebhookSigner("whsec_c2hvcnQ=")).toThrow(/24 to 64 random bytes/);
  });
});
