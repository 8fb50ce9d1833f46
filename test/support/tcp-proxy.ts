import net from "node:net";

/**
 * A loopback TCP proxy a test can cut and restore, to make a real server (Postgres, Redis)
 * unreachable for the code under test without stopping the server the other tests share.
 *
 * The proxy keeps its port for its whole life: a cut drops every connection and resets each new
 * one at once, instead of closing the listening socket. Closing it and listening again on
 * `restore()` would leave the port free in between for any other process on the machine to take,
 * and the code under test only knows this port.
 */
export class TcpProxy {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  private cutOff = false;
  port = 0;
  /** Connections refused since the last `cut()`: the code under test tried to reach the server. */
  refused = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(port = 0): Promise<number> {
    this.server = net.createServer(client => {
      if (this.cutOff) {
        this.refused += 1;
        client.on("error", () => undefined);
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(this.targetPort, this.targetHost);
      this.sockets.add(client);
      this.sockets.add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Drops every connection and refuses new ones until `restore()`. */
  async cut(): Promise<void> {
    if (this.cutOff) return;
    this.cutOff = true;
    this.refused = 0;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async restore(): Promise<void> {
    this.cutOff = false;
  }

  /** Drops every connection and closes the port. */
  async stop(): Promise<void> {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>(resolve => server.close(() => resolve()));
  }
}
