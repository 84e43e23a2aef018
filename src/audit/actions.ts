/** The audit action types the kernel itself records. Plugins declare theirs in `Plugin.actions`. */
import type { AuditActionType } from "../plugin.ts";

export const KERNEL_ACTIONS: readonly AuditActionType[] = [
  { type: "sys.init", description: "The installation was initialized: root key, first key-encryption key." },
  { type: "sys.unseal", description: "An unseal attempt: a key or key share was given (failure: it was refused)." },
  { type: "sys.seal", description: "The keys were dropped from memory." },
  { type: "sys.tls.renew", description: "The self-signed TLS certificate was renewed by hand (citadel tls renew): who ran it, the public key pin, and whether the key is new (clients must pin it again)." },
  { type: "sys.tls.reload", description: "The API's TLS certificate was read again on SIGHUP and replaced (failure: the new files were refused, the old certificate kept)." },
  { type: "keys.kek.rotate", description: "A new key-encryption key version was made; data keys are re-wrapped with it." },
  { type: "keys.root.rekey", description: "A new root key was made (pending until it is used to unseal, or written as the key file)." },
  { type: "keys.root.promote", description: "A pending root key became the root key; the previous one no longer unseals." },
  { type: "keys.root.discard", description: "A pending root key nobody holds (a key file rekey that stopped early) was forgotten." },
  { type: "audit.note.create", description: "An operator wrote a note into the audit log." },
  { type: "audit.subject.erase", description: "A subject's personal data in the audit log was erased by destroying its key." },
  { type: "audit.export", description: "Audit events were exported." },
  { type: "audit.read", description: "A page of audit events (their personal data decrypted) was read." },
  { type: "audit.checkpoint.create", description: "A signed checkpoint of the chain was asked for (the checkpoint covers this event)." },
  { type: "auth.token.reject", description: "A request came with a token that is malformed, unknown, expired or revoked." },
  { type: "auth.permission.deny", description: "A request was refused: missing scope, role, membership, service activation, or address not allowed." },
  { type: "auth.rate_limit", description: "Requests were refused for exceeding a rate limit (one event per address or organization and minute)." },
];
