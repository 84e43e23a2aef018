/**
 * The service's system account and who owns what. On the machine itself (--root /) the
 * citadel user and group are created when missing and ownership is applied; under another
 * root nothing touches this machine's accounts, and the intended owner is only reported (the
 * unit's StateDirectory= hands the data directory to the user at the target's first start).
 */
import { SERVICE_USER, TARGET } from "./layout.ts";
import type { ReportItem } from "./report.ts";
import type { SystemTools } from "./system-tools.ts";

export interface Owner {
  user: string;
  group: string;
}

export const ROOT_OWNED: Owner = { user: "root", group: "root" };
/** Readable by the service through its group, writable by root alone (the config). */
export const SERVICE_READABLE: Owner = { user: "root", group: SERVICE_USER };
export const SERVICE_OWNED: Owner = { user: SERVICE_USER, group: SERVICE_USER };

export interface Ids {
  uid: number;
  gid: number;
}

export class Accounts {
  constructor(
    private readonly tools: SystemTools,
    /** False under another root: owners are reported, never applied. */
    readonly apply: boolean,
  ) {}

  /** Creates the system user (and its group) unless it exists. */
  async ensureServiceUser(): Promise<ReportItem> {
    const what = `user ${SERVICE_USER}`;
    if (!this.apply) return { status: "skipped", what, detail: "--root is not /: create it on the target (a system user, home /var/lib/citadel, shell /usr/sbin/nologin)" };
    if (await this.entry("passwd", SERVICE_USER)) return { status: "unchanged", what };
    // useradd makes the group itself unless a group of that name exists already.
    const group = (await this.entry("group", SERVICE_USER)) ? ["--gid", SERVICE_USER] : ["--user-group"];
    await this.tools.mustRun(["useradd", "--system", ...group, "--home-dir", TARGET.dataDir, "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER]);
    this.cache.clear();
    return { status: "created", what, detail: `system user, home ${TARGET.dataDir}, shell /usr/sbin/nologin` };
  }

  /** The numeric owner, or null when owners are not applied here. */
  async ids(owner: Owner): Promise<Ids | null> {
    if (!this.apply) return null;
    const user = await this.entry("passwd", owner.user);
    const group = await this.entry("group", owner.group);
    if (!user || !group) throw new Error(`no ${user ? "group" : "user"} ${user ? owner.group : owner.user} on this machine`);
    return { uid: Number(user[2]), gid: Number(group[2]) };
  }

  /** "0640 root:citadel", and whether it is applied. */
  describe(mode: number, owner: Owner): string {
    return `${mode.toString(8).padStart(4, "0")} ${owner.user}:${owner.group}${this.apply ? "" : " (owner not applied: --root is not /)"}`;
  }

  private readonly cache = new Map<string, string[] | null>();

  /** An entry of the account databases (files, LDAP, ...) through getent, split at colons. */
  private async entry(database: "passwd" | "group", name: string): Promise<string[] | null> {
    const key = `${database}:${name}`;
    if (!this.cache.has(key)) {
      const result = await this.tools.run(["getent", database, name]);
      this.cache.set(key, result.code === 0 ? result.stdout.trim().split(":") : null);
    }
    return this.cache.get(key)!;
  }
}
