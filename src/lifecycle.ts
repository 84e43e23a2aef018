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

  /**
   * Stops everything in reverse start order; one failure does not keep the rest from
   * stopping. Resolves true when all stopped within `deadlineMs`, false when it gave up.
   */
  async stopAll(deadlineMs = Infinity): Promise<boolean> {
    const stopping = (async () => {
      while (this.stops.length > 0) {
        const { name, stop } = this.stops.pop()!;
        try {
          await stop();
        } catch (error) {
          this.log.error("failed to stop cleanly", { component: name, error });
        }
      }
      return true;
    })();
    if (deadlineMs === Infinity) return stopping;
    let timer: Timer | undefined;
    const deadline = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        this.log.error("stopping took too long; giving up", { still_running: this.stops.map((s) => s.name) });
        resolve(false);
      }, deadlineMs);
    });
    const result = await Promise.race([stopping, deadline]);
    clearTimeout(timer);
    return result;
  }
}
