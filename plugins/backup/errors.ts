/**
 * A backup cannot be made, read or restored. The message is meant for the operator as it is:
 * it says what is wrong with the file, the key or the data directory, and what to do.
 */
export class BackupError extends Error {
  override readonly name = "BackupError";
}

/**
 * The root key was replaced (a key file rekey) between the backup's key and its snapshot: the
 * file would open only with the old key while the database in it unseals only with the new.
 */
export class RootKeyChangedError extends BackupError {}

/** The restore would put an existing database aside, and the operator has not said yes (--yes): a usage error, exit 2. */
export class ConfirmationNeeded extends BackupError {}

/**
 * The backup file named cannot be read (missing, no permission, a directory): the input's
 * fault, not the backup's, so a usage error (exit 2) with no FAILED, as any input file (docs/cli.md).
 */
export class BackupFileUnreadable extends BackupError {}

/**
 * Another Citadel holds the data directory (serving it, or the database open): a refusal, exit
 * 1, but no FAILED, which says a backup failed its check.
 */
export class DataDirectoryBusy extends BackupError {}
