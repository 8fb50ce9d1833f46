import { ServiceBroker } from "moleculer";
import { STACK, uniqueName } from "../../support/stack";

describe("NATS transporter (real)", () => {
  const namespace = uniqueName("smoke");
  const brokers: ServiceBroker[] = [];

  const node = (nodeID: string) => {
    const broker = new ServiceBroker({
      namespace,
      nodeID,
      transporter: { type: "NATS", options: { url: STACK.natsUrl } },
      logger: false,
    });
    brokers.push(broker);
    return broker;
  };

  afterAll(() => Promise.all(brokers.map(b => b.stop())));

  it("lets two brokers discover each other and call each other's actions", async () => {
    const a = node("node-a");
    const b = node("node-b");
    a.createService({ name: "alpha", actions: { whoami: () => "node-a" } });
    b.createService({
      name: "beta",
      actions: { echo: ctx => ({ from: "node-b", got: (ctx.params as { x: number }).x }) },
    });
    await Promise.all([a.start(), b.start()]);
    await Promise.all([a.waitForServices("beta", 60000), b.waitForServices("alpha", 60000)]);

    await expect(a.call("beta.echo", { x: 42 })).resolves.toEqual({ from: "node-b", got: 42 });
    await expect(b.call("alpha.whoami")).resolves.toBe("node-a");
    const nodes = a.registry
      .getServiceList({ onlyAvailable: true, skipInternal: true })
      .map(s => s.name)
      .sort();
    expect(nodes).toEqual(["alpha", "beta"]);
  });
});
