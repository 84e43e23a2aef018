/**
 * The data directory holds the database, keys and generated files: it is created 0700 and
 * refused when group or others can enter it, because everything in it is sensitive.
 */
import { mkdirSync, statSync } from "node:fs";
import { ConfigError } from "./config/error.ts";
import { describeFsError } from "./files.ts";

export function prepareDataDir(path: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new ConfigError(`data_dir: cannot create ${path}: ${describeFsError(error)}`);
  }
  const stat = statSync(path);
  if (!stat.isDirectory()) throw new ConfigError(`data_dir: ${path} is not a directory`);
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8);
    throw new ConfigError(`data_dir: ${path} is open to group or others (mode ${mode}); run: chmod 700 ${path}`);
  }
}
