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

/** What a route does, in the words of a refusal: "You need … to <phrase>." */
export const ACTION_PHRASES = {
  create: 'create deliveries',
  edit: 'edit this delivery',
  prepare: 'prepare this delivery',
  proof: 'send proofs of this delivery',
  approve: 'approve this delivery',
  confirm: 'confirm this send',
  ok: 'OK this send',
  pause: 'pause this delivery',
  resume: 'resume this delivery',
  stop: 'stop this delivery',
} as const;

export type RouteAction = keyof typeof ACTION_PHRASES;

/** For routes that name no action: what the role is for. */
const ROLE_PHRASES: Partial<Record<Role, string>> = {
  'delivery:start': 'start deliveries',
  'delivery:prepare': 'prepare or edit deliveries',
  'delivery:approve': 'approve deliveries',
  'delivery:view': 'view deliveries',
  admin: 'do this',
};

export function missingRoleMessage(required: Role, action?: RouteAction): string {
  const phrase = action ? ACTION_PHRASES[action] : (ROLE_PHRASES[required] ?? 'do this');
  return `You need the '${ROLE_LABELS[required]}' role (${required}) to ${phrase}.`;
}
