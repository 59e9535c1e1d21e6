// Roles carried by bearer tokens, with the names the reference product shows to users.
export const ROLE_LABELS = {
  'delivery:prepare': 'Prepare deliveries',
  'delivery:approve': 'Approve deliveries',
  'delivery:start': 'Start deliveries',
  'delivery:view': 'View deliveries',
  admin: 'Administration',
} as const;

export type Role = keyof typeof ROLE_LABELS;
export const ROLES = Object.keys(ROLE_LABELS) as Role[];

export function isRole(value: string): value is Role {
  return value in ROLE_LABELS;
}

/** `admin` holds every role. */
export function hasRole(roles: readonly string[], required: Role): boolean {
  return roles.includes(required) || roles.includes('admin');
}

const ACTIONS: Partial<Record<Role, string>> = {
  'delivery:start': 'confirm this send',
  'delivery:prepare': 'prepare or edit deliveries',
  'delivery:approve': 'approve deliveries',
  'delivery:view': 'view deliveries',
  admin: 'do this',
};

export function missingRoleMessage(required: Role): string {
  return `You need the '${ROLE_LABELS[required]}' role (${required}) to ${ACTIONS[required] ?? 'do this'}.`;
}
