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
