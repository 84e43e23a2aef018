import { describe, expect, test } from "bun:test";
import { rekey } from "../../../src/crypto/key-operations.ts";
import { promoteRootKey } from "../../../src/crypto/keyring.ts";
import { testKernel } from "../../helpers/http.ts";

const OPERATOR = { kind: "operator" as const };

describe("rekey", () => {
  test("keeps the keepers' arrangement (shares and threshold) unless told otherwise (found in review)", async () => {
    const k = testKernel({ sealMethod: "shamir" }); // 3 of 5
    for (const share of k.shares.slice(0, 3)) k.seal.submitShare(share);
    const roots = () => k.store.db.query("SELECT shares, threshold, state FROM root_keys ORDER BY state").all();

    // 2 of 3 on purpose, then promoted by unsealing with the new shares.
    const first = await rekey(k.store, k.seal, k.audit, k.keySource, OPERATOR, k.clock.now, { shares: 3, threshold: 2 });
    expect(first.shares).toHaveLength(3);
    k.seal.seal();
    let unsealed: ReturnType<typeof k.seal.submitShare> | undefined;
    for (const share of first.shares!.slice(0, 2)) unsealed = k.seal.submitShare(share);
    await k.store.write((tx) => promoteRootKey(tx, (unsealed as { promote: string }).promote));
    expect(roots()).toEqual([{ shares: 3, threshold: 2, state: "active" }]);

    // No options: 2 of 3 again, not the 3-of-5 default.
    const second = await rekey(k.store, k.seal, k.audit, k.keySource, OPERATOR, k.clock.now);
    expect(second.shares).toHaveLength(3);
    expect(roots()).toEqual([
      { shares: 3, threshold: 2, state: "active" },
      { shares: 3, threshold: 2, state: "pending" },
    ]);
  });
});
