// Every error a client can see is defined here once, with its code and status
// (after Fastify core's lib/errors.js). The error handler maps anything else to INTERNAL.

export const ErrorCodes = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  REQUEST_TIMEOUT: 408,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  HEADERS_TOO_LARGE: 431,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503
} as const

export type ErrorCode = keyof typeof ErrorCodes

export class AppError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly details?: unknown
  /** seconds, sent as Retry-After (429, 503) */
  readonly retryAfter?: number

  constructor(code: ErrorCode, message: string, opts: { details?: unknown; retryAfter?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.name = 'AppError'
    this.code = code
    this.statusCode = ErrorCodes[code]
    this.details = opts.details
    this.retryAfter = opts.retryAfter
  }
}

export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`)
export const badRequest = (message: string, details?: unknown) => new AppError('BAD_REQUEST', message, { details })
export const validationFailed = (message: string, details?: unknown) =>
  new AppError('VALIDATION_FAILED', message, { details })
export const unavailable = (message: string, retryAfter = 5) => new AppError('UNAVAILABLE', message, { retryAfter })
