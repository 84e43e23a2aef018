/**
 * `--seal credential|shamir|key-file`, the operator's words for the seal methods: taken by
 * `citadel install` (how a new installation keeps its root key) and `citadel keys rekey`
 * (moving an instance to another method).
 */
import type { SealMethod } from "../crypto/keyring.ts";
import { UsageError } from "./command-line.ts";

/** The values of --seal. */
export const SEAL_OPTIONS = { credential: "systemd_credential", shamir: "shamir", "key-file": "key_file" } as const satisfies Record<string, SealMethod>;
export type SealOption = keyof typeof SEAL_OPTIONS;

export function parseSealOption(value: string | undefined): SealOption | undefined {
  if (value === undefined) return undefined;
  if (Object.hasOwn(SEAL_OPTIONS, value)) return value as SealOption;
  throw new UsageError(`--seal ${value}: use one of ${Object.keys(SEAL_OPTIONS).join(", ")}`);
}
