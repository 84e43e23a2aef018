/**
 * What install and uninstall did, item by item: printed as aligned lines, or as JSON with
 * --json. "unchanged" on every line is what a second install prints.
 */
export type ItemStatus = "created" | "updated" | "unchanged" | "removed" | "absent" | "kept" | "skipped" | "done" | "failed";

export interface ReportItem {
  status: ItemStatus;
  /** A path, or what else the item is ("user citadel", "systemctl daemon-reload"). */
  what: string;
  /** Mode and owner, or why the status is what it is. */
  detail?: string;
}

export function formatItem(item: ReportItem): string {
  return `  ${item.status.padEnd(10)} ${item.what}${item.detail ? `  ${item.detail}` : ""}`;
}

export function changed(items: readonly ReportItem[]): boolean {
  return items.some((i) => i.status === "created" || i.status === "updated" || i.status === "removed");
}
