import { MemorySnapshotStore } from "../../../../adapters/snapshots/memory-snapshots";
import { snapshotStoreContract } from "../../../support/snapshot-store-contract";

describe("MemorySnapshotStore", () => {
  snapshotStoreContract(() => new MemorySnapshotStore());

  it("starts empty: a new store (a restarted process) holds no state", async () => {
    const first = new MemorySnapshotStore();
    await first.save(0, [{ symbol: "AAPL", state: "s" }]);
    const second = new MemorySnapshotStore();
    await expect(second.load(0, ["AAPL"])).resolves.toEqual([null]);
    await expect(second.symbols(0)).resolves.toEqual([]);
  });
});
