/**
 * Loaded before every test file (bunfig.toml). Under `bun test --parallel` (scripts/test.sh) a
 * worker process runs file after file, and this runs again before each of them.
 */
import { afterAll } from "bun:test";
import { runEndTasks } from "./helpers/run-end.ts";

// The umask is the process's, not the file's: a file that runs main() in-process leaves main()'s
// 077 behind for the next file the same worker runs (seen as files written 0644 reading as 0600).
// Every file starts from the umask a shell gives.
process.umask(0o022);

// What the helpers registered (temporary directories, reference servers) runs once the file's
// tests end: each file has its own module registry under --parallel, so its own helpers' tasks.
afterAll(runEndTasks);
