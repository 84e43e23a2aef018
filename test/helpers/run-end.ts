/**
 * Work to do once the whole test run ends: remove what the run made, stop what it started.
 * `bun test` fires no process "exit" event, so test/preload.ts runs these in a global afterAll;
 * the "exit" event still serves scripts (benchmarks) that import the helpers. `bun test --bail`
 * stops without either: after a bailed run, /tmp may hold a config home (citadel-e2e-config-*).
 */
const tasks: Array<() => void> = [];

export function atRunEnd(task: () => void): void {
  tasks.push(task);
}

export function runEndTasks(): void {
  for (const task of tasks.splice(0)) {
    try {
      task();
    } catch {
      // one cleanup failing does not keep the others from running
    }
  }
}

process.on("exit", runEndTasks);
