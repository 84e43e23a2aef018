/**
 * Roles per organization (a workspace may narrow them), and what each may do:
 *
 *   permission       viewer  editor  admin  owner
 *   view               ✓       ✓       ✓      ✓
 *   edit                       ✓       ✓      ✓
 *   delete                             ✓      ✓
 *   manage_members                     ✓      ✓
 *   admin                                     ✓   (organization settings, ownership transfer)
 */
export const ROLES = ["viewer", "editor", "admin", "owner"] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = ["view", "edit", "delete", "manage_members", "admin"] as const;
export type Permission = (typeof PERMISSIONS)[number];

const GRANTS: Record<Role, readonly Permission[]> = {
  viewer: ["view"],
  editor: ["view", "edit"],
  admin: ["view", "edit", "delete", "manage_members"],
  owner: ["view", "edit", "delete", "manage_members", "admin"],
};

export function roleAllows(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}

/** A workspace role narrows the organization role: the lesser of the two applies. */
export function effectiveRole(organizationRole: Role, workspaceRole: Role | null): Role {
  if (workspaceRole === null) return organizationRole;
  return ROLES.indexOf(workspaceRole) < ROLES.indexOf(organizationRole) ? workspaceRole : organizationRole;
}

/** The permission a scope's action needs by default (`secrets:read` → view). */
export function permissionForScope(scope: string): Permission {
  const action = scope.slice(scope.indexOf(":") + 1);
  if (action === "read") return "view";
  if (action === "admin") return "admin";
  return "edit";
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}
