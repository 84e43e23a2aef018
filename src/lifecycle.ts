/**
 * Long-lived resources register how to stop them as they start; `stopAll` runs those in
 * reverse order. Because only what started is registered, stopping after a failed start
 * is always safe.
 */
import type { Logger } from "./log.ts";

export class Lifecycle {
  private readonly stops: Array<{ name: string; stop: () => Promise<void> | void }> = [];

  constructor(private readonly log: Logger) {}

  /** Registers the stop function of something that has just started. */
  started(name: string, stop: () => Promise<void> | void): void {
    this.stops.push({ name, stop });
  }

  /** Stops everything in reverse start order; one failure does not keep the rest running. */
  async stopAll(): Promise<void> {
    while (this.stops.length > 0) {
      const { name, stop } = this.stops.pop()!;
      try {
        await stop();
      } catch (error) {
        this.log.error("failed to stop cleanly", { component: name, error });
      }
    }
  }
}
