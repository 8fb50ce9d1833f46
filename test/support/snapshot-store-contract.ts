import type { SnapshotStore } from "../../adapters/snapshots/types";

/**
 * What every SnapshotStore promises (adapters/snapshots/types.ts), run against each
 * implementation: the memory store in the unit tier, Redis in the integration tier.
 */
export function snapshotStoreContract(open: () => SnapshotStore): void {
  let store: SnapshotStore;
  beforeEach(() => {
    store = open();
  });
  afterEach(() => store.close());

  it("gives back the states of the symbols asked for, in the order asked, null where none", async () => {
    await store.save(3, [
      { symbol: "AAPL", state: '{"seq":1}' },
      { symbol: "MSFT", state: '{"seq":2}' },
    ]);
    await expect(store.load(3, ["MSFT", "NOPE", "AAPL"])).resolves.toEqual(['{"seq":2}', null, '{"seq":1}']);
  });

  it("keeps each partition's states apart", async () => {
    await store.save(3, [{ symbol: "AAPL", state: "three" }]);
    await store.save(4, [{ symbol: "AAPL", state: "four" }]);
    await expect(store.load(3, ["AAPL"])).resolves.toEqual(["three"]);
    await expect(store.load(4, ["AAPL"])).resolves.toEqual(["four"]);
    await expect(store.load(5, ["AAPL"])).resolves.toEqual([null]);
  });

  it("keeps the last state saved for a symbol, and the others saved before", async () => {
    await store.save(0, [
      { symbol: "AAPL", state: "old" },
      { symbol: "MSFT", state: "kept" },
    ]);
    await store.save(0, [{ symbol: "AAPL", state: "new" }]);
    await expect(store.load(0, ["AAPL", "MSFT"])).resolves.toEqual(["new", "kept"]);
  });

  it("lists a partition's symbols sorted, and none for a partition never saved", async () => {
    await store.save(
      1,
      ["TSLA", "AAPL", "MSFT"].map(symbol => ({ symbol, state: symbol })),
    );
    await store.save(1, [{ symbol: "AAPL", state: "again" }]);
    await expect(store.symbols(1)).resolves.toEqual(["AAPL", "MSFT", "TSLA"]);
    await expect(store.symbols(2)).resolves.toEqual([]);
  });

  it("takes an empty save and an empty load", async () => {
    await store.save(0, []);
    await expect(store.symbols(0)).resolves.toEqual([]);
    await expect(store.load(0, [])).resolves.toEqual([]);
  });

  it("keeps a state byte for byte, whatever it holds", async () => {
    const state = JSON.stringify({ s: 'quote " backslash \\ newline \n unicode é😀', n: 0.1 + 0.2 });
    await store.save(0, [{ symbol: "BRK.B", state }]);
    await expect(store.load(0, ["BRK.B"])).resolves.toEqual([state]);
  });

  it("answers a ping", async () => {
    await expect(store.ping()).resolves.toBeUndefined();
  });
}
