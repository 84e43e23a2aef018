/**
 * What was built: version, commit and build time. `bun run build` bakes the values in with
 * --define; a run from source reports the package version and "dev".
 */
import pkg from "../package.json" with { type: "json" };

declare const CITADEL_COMMIT: string | undefined;
declare const CITADEL_BUILD_TIME: string | undefined;

export interface BuildInfo {
  version: string;
  commit: string;
  /** ISO 8601, or null when running from source. */
  buildTime: string | null;
  compiled: boolean;
}

export const buildInfo: BuildInfo = {
  version: pkg.version,
  commit: typeof CITADEL_COMMIT === "string" ? CITADEL_COMMIT : "dev",
  buildTime: typeof CITADEL_BUILD_TIME === "string" ? CITADEL_BUILD_TIME : null,
  compiled: typeof CITADEL_BUILD_TIME === "string",
};
