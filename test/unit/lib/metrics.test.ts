import { ServiceBroker } from "moleculer";
import { CounterBatch, METRIC, registerMetrics } from "../../../lib/metrics";

/** The batched counters must end up with exactly the increments made, no more, no fewer. */
describe("CounterBatch", () => {
  let broker: ServiceBroker;

  beforeEach(() => {
    jest.useFakeTimers();
    broker = new ServiceBroker({ logger: false, metrics: { enabled: true, reporter: [] } });
    registerMetrics(broker);
  });

  afterEach(() => {
    jest.useRealTimers();
  });

  const accepted = (type: string) =>
    (broker.metrics.getMetric(METRIC.ingestAccepted).get({ type }) as { value: number } | null)?.value ?? 0;

  it("hands the sums to the registry once per interval, and on flush", () => {
    const batch = new CounterBatch(broker, 1000);
    batch.add("price", METRIC.ingestAccepted, { type: "price" }, 3);
    batch.add("price", METRIC.ingestAccepted, { type: "price" });
    batch.add("side", METRIC.ingestAccepted, { type: "side" }, 2);
    expect(accepted("price")).toBe(0);
    jest.advanceTimersByTime(1000);
    expect([accepted("price"), accepted("side")]).toEqual([4, 2]);

    batch.add("price", METRIC.ingestAccepted, { type: "price" }, 5);
    jest.advanceTimersByTime(999);
    expect(accepted("price")).toBe(4);
    batch.flush();
    expect([accepted("price"), accepted("side")]).toEqual([9, 2]);
    // Nothing pending: a later interval adds nothing.
    jest.advanceTimersByTime(5000);
    expect([accepted("price"), accepted("side")]).toEqual([9, 2]);
  });

  it("does nothing when the broker's metrics are off", () => {
    const off = new ServiceBroker({ logger: false, metrics: false });
    const batch = new CounterBatch(off, 10);
    batch.add("price", METRIC.ingestAccepted, { type: "price" });
    expect(() => jest.advanceTimersByTime(10)).not.toThrow();
  });
});
