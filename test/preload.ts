/** Loaded before every test file (bunfig.toml): what the helpers registered runs once the whole run ends. */
import { afterAll } from "bun:test";
import { runEndTasks } from "./helpers/run-end.ts";

afterAll(runEndTasks);
