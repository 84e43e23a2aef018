/**
 * Which seal method an installation gets, and why: the operator is told what protects the
 * root key. A systemd credential is preferred whenever systemd-creds exists (bound to the TPM2
 * when there is one, else to the host key only root can read); a key file is the fallback.
 * Shamir shares are never the default: every restart then needs key holders.
 *
 * Under --root (an image) a credential is never made: systemd-creds would seal the key to
 * *this* machine's TPM2 or host key, creating /var/lib/systemd/credential.secret here, and the
 * machine that boots the image could never decrypt it.
 */
import { UsageError } from "../../src/cli/command-line.ts";
import { SEAL_OPTIONS, type SealOption } from "../../src/cli/seal-option.ts";
import type { SealMethod } from "../../src/crypto/keyring.ts";
import type { SystemTools } from "./system-tools.ts";

export interface SealDecision {
  method: SealMethod;
  /** One sentence for the operator: why this method, and what protects the key. */
  reason: string;
  /** systemd_credential: the key systemd-creds encrypts with (its --with-key=). */
  credentialKey: "tpm2" | "host" | null;
}

/**
 * `requested`: --seal, if given. `installed`: seal.method of an existing config, which wins,
 * because a second install must not change how an existing root key is kept. `onHost`: the
 * root is "/", so a credential made here is made for this machine.
 */
export async function decideSeal(tools: SystemTools, requested: SealOption | undefined, installed: { method: SealMethod; configFile: string } | null, onHost: boolean): Promise<SealDecision> {
  if (installed) {
    if (requested && SEAL_OPTIONS[requested] !== installed.method) {
      throw new UsageError(`this Citadel is installed with seal.method "${installed.method}" (${installed.configFile}); --seal ${requested} would need a new root key: move it with \`citadel keys rekey --seal ${requested} --yes\` (docs/keys.md), not by installing again`);
    }
    const reason = `already installed with seal.method "${installed.method}" (${installed.configFile})`;
    if (installed.method !== "systemd_credential") return { method: installed.method, reason, credentialKey: null };
    // Under another root this machine's TPM2 is not the target's: not even asked about.
    return onHost ? withCredentialKey(tools, reason) : { method: installed.method, reason: `${reason}: the credential is made on the machine that boots the image`, credentialKey: null };
  }
  if (!onHost) return forImage(requested);
  const hasCreds = tools.find("systemd-creds") !== null;
  if (requested === "credential" && !hasCreds) throw new UsageError("--seal credential needs systemd-creds (systemd 250 or later), which is not installed");
  if (requested && requested !== "credential") return { method: SEAL_OPTIONS[requested], reason: `--seal ${requested}: ${WHY[requested]}`, credentialKey: null };
  if (requested === "credential") return withCredentialKey(tools, "--seal credential");
  if (hasCreds) return withCredentialKey(tools, "systemd-creds is installed");
  return {
    method: "key_file",
    reason: "systemd-creds not found (systemd 250 or later has it): the key is a file in the data directory, readable by the citadel user alone; --seal shamir keeps it off this machine",
    credentialKey: null,
  };
}

const WHY = {
  shamir: "the key exists only as shares held by people; every start waits for `citadel unseal`",
  "key-file": "the key is a file in the data directory, readable by the citadel user alone",
} as const;

/** Under --root: a key file unless --seal says shamir; --seal credential is a usage error. */
function forImage(requested: SealOption | undefined): SealDecision {
  if (requested === "credential") {
    throw new UsageError(
      "--seal credential with --root: systemd-creds would seal the root key to this machine's TPM2 or host key, not to the machine that boots the image, which could then never decrypt it. Install the image with --seal key-file (the default under --root) or shamir, and make the credential on the target (docs/install.md, Under --root)",
    );
  }
  if (requested) return { method: SEAL_OPTIONS[requested], reason: `--seal ${requested}: ${WHY[requested]}`, credentialKey: null };
  return { method: "key_file", reason: `--root is not /: ${WHY["key-file"]} (a systemd credential made here would decrypt only on this machine)`, credentialKey: null };
}

/** Asks systemd-creds whether a TPM2 is usable; its answer ("yes", "no", "partial") is quoted. */
async function withCredentialKey(tools: SystemTools, why: string): Promise<SealDecision> {
  const probe = await tools.run(["systemd-creds", "has-tpm2"]);
  const answer = probe.stdout.split("\n", 1)[0]!.trim() || `exit ${probe.code}`;
  if (probe.code === 0) {
    return { method: "systemd_credential", credentialKey: "tpm2", reason: `${why}; TPM2 found (systemd-creds has-tpm2: ${answer}): the key is encrypted with this machine's TPM2 and decrypts only here` };
  }
  return {
    method: "systemd_credential",
    credentialKey: "host",
    reason: `${why}; no usable TPM2 (systemd-creds has-tpm2: ${answer}): the key is encrypted with the host key /var/lib/systemd/credential.secret, which only root can read`,
  };
}
