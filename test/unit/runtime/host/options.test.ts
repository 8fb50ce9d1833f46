import { isRetriable } from "../../../../domain/errors";
import { assert } from "../../../../runtime/host/options";

/**
 * options.ts is the host's types, and `assert`: a broken invariant of the host is a bug here,
 * never bad input, and its message says so in the log.
 */

describe("assert", () => {
  it("passes a condition that holds", () => {
    expect(() => assert(true, "partition 3 is owned")).not.toThrow();
  });

  it("throws a plain Error naming the broken invariant, never a retriable one", () => {
    let thrown: unknown;
    try {
      assert(false, "partition 3 has an epoch only while owned");
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toEqual(new Error("invariant broken: partition 3 has an epoch only while owned"));
    // A retry loop passes it on at once (retryWhileOwned): no retry mends a bug.
    expect(isRetriable(thrown)).toBe(false);
  });
});
