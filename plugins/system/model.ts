import { t } from "elysia";

export const SystemInfo = t.Object({
  version: t.String({ description: "Citadel's version." }),
  commit: t.String({ description: "Git commit the binary was built from (`dev` when run from source)." }),
  build_time: t.Union([t.String({ format: "date-time" }), t.Null()], { description: "When the binary was built." }),
  uptime_seconds: t.Number({ description: "Seconds since this process started serving." }),
});
export type SystemInfo = typeof SystemInfo.static;
