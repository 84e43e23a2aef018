/**
 * What an email address is compared by: one mailbox, one key, however it is typed — composed or
 * not (NFC: "é" as one character or as "e" and a combining accent), in any case, not only ASCII
 * (COLLATE NOCASE folds A-Z alone). Found in review: "éve@", "e\u0301ve@" and "ÉVE@" were three
 * accounts, and an invitation to one form passed the check that the address was a member's.
 * Tags (+ci) are the mailbox's business, not folded. Every lookup by address goes through it
 * (migration 0010 keyed the rows made before).
 */
export const emailKey = (email: string) => email.trim().normalize("NFC").toLowerCase();
