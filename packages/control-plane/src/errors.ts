// Domain errors carry a stable code; the gateway maps each code to one HTTP status.
export const ERROR_STATUS = {
  UNAUTHORIZED: 401,
  WEBHOOK_SIGNATURE_INVALID: 401,
  INVALID_INPUT: 400,
  SEND_TIME_PAST: 400,
  MISSING_ROLE: 403,
  NOT_FOUND: 404,
  INVALID_STATE: 409,
  CONFIRMATION_STALE: 409,
  CHANNEL_NOT_CONFIGURED: 409,
  CONFIRMATION_EXPIRED: 410,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string, id: string) => new DomainError('NOT_FOUND', `${what} '${id}' does not exist.`);
