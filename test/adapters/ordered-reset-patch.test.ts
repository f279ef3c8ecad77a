import { describe, expect, it } from "vitest";
import { orderedResetPatchApplied } from "../../src/adapters/jetstream/ordered-reset-patch.ts";

// What the patch fixes (an ordered consumer idle for ~30 s after a NATS restart) is shown end to end by
// test/integration/nats-restart.test.ts; this pins that it still applies to the locked library version.
describe("the ordered consumer reset patch", () => {
  it("applies to the locked @nats-io/jetstream version (an upgrade that changes its code must be looked at again)", () => {
    expect(orderedResetPatchApplied).toBe(true);
  });
});
