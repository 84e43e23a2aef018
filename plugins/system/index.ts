/**
 * The `system` plugin: what is running (version, commit, build time, uptime). Small on
 * purpose: it is the proof of the plugin contract (routes, a CLI command, no migrations).
 */
import { Elysia } from "elysia";
import { access } from "../../src/http/access.ts";
import { synchronous } from "../../src/http/synchronous.ts";
import { definePlugin, type Kernel } from "../../src/plugin.ts";
import { SystemInfo } from "./model.ts";

export function systemInfo(k: Kernel): SystemInfo {
  return {
    version: k.build.version,
    commit: k.build.commit,
    build_time: k.build.buildTime,
    uptime_seconds: Math.max(0, Math.round((k.clock.now() - k.startedAt) / 10) / 100),
  };
}

export const systemPlugin = definePlugin({
  name: "system",
  service: "system",
  scopes: ["system:read"],
  actions: [],
  migrations: [],
  routes: (k) =>
    new Elysia({ name: "system" }).get("/info", synchronous(() => systemInfo(k)), {
      response: SystemInfo,
      detail: { summary: "Version, commit, build time and uptime of this Citadel", tags: ["system"], ...access({ scope: "system:read", noReadSnapshot: true }) },
    }),
  commands: [
    {
      words: ["system", "info"],
      summary: "Show the version, commit, build time and uptime of the running Citadel",
      async run(ctx) {
        const info = await (await ctx.api()).request<SystemInfo>("GET", "/v1/system/info");
        if (ctx.json) ctx.out(JSON.stringify(info, null, 2));
        else {
          ctx.out(`version     ${info.version}`);
          ctx.out(`commit      ${info.commit}`);
          ctx.out(`built       ${info.build_time ?? "from source"}`);
          ctx.out(`uptime      ${info.uptime_seconds} s`);
        }
        return 0;
      },
    },
  ],
});
