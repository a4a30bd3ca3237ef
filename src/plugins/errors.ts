// One error handler and one not-found handler, producing the contract's error body. The full
// error is logged once (5xx at error, 4xx at info); the client gets only what is safe.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { isDatabaseUnavailable, isStatementTimeout } from '../db/errors.ts'
import { AppError, type ErrorCode } from '../errors.ts'
import { describeAjvErrors } from '../validation.ts'

const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  503: 'UNAVAILABLE'
}

export function toAppError(err: FastifyError | AppError | Error): AppError {
  if (err instanceof AppError) return err
  const fe = err as FastifyError
  if (fe.validation) {
    const details = describeAjvErrors(fe.validation as never)
    const where = fe.validationContext && fe.validationContext !== 'body' ? `${fe.validationContext}: ` : ''
    return new AppError('VALIDATION_FAILED', `${where}${details.map((d) => d.message).join('; ') || 'invalid request'}`, {
      details
    })
  }
  if (isStatementTimeout(err)) {
    return new AppError('UNAVAILABLE', 'the database took too long to answer; retry later or narrow the filters', { retryAfter: 5, cause: err })
  }
  if (isDatabaseUnavailable(err)) {
    return new AppError('UNAVAILABLE', 'the database is unavailable; retry later', { retryAfter: 5, cause: err })
  }
  const status = fe.statusCode
  if (status && status >= 400 && status < 500) {
    const code = CODE_BY_STATUS[status] ?? 'BAD_REQUEST'
    let message = fe.message
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = 'only application/json bodies are accepted'
    else if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = 'request body is too large'
    else if (fe.code === 'FST_ERR_MAX_PARAM_LENGTH') message = 'a path parameter is too long'
    else if (fe.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') message = 'request body is empty but content-type is application/json'
    else if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') message = `malformed JSON: ${fe.message}`
    return new AppError(code, message.slice(0, 300), { cause: err })
  }
  return new AppError('INTERNAL', 'internal error', { cause: err })
}

export function sendError(req: FastifyRequest, reply: FastifyReply, e: AppError) {
  reply.header('x-request-id', req.id)
  if (e.retryAfter !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(e.retryAfter))))
  return reply
    .code(e.statusCode)
    .type('application/json; charset=utf-8')
    .send({
      error: { code: e.code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) },
      request_id: req.id
    })
}

export default fp(
  async (app) => {
    app.setErrorHandler((err: FastifyError, req, reply) => {
      // a client that hangs up mid-upload is its own event, not a database outage (its
      // ECONNRESET would read as one) and not an error of ours; nobody is left to answer
      if (req.raw.aborted || (req.raw.destroyed && !req.raw.complete)) {
        req.log.info({ code: 'CLIENT_ABORTED' }, 'client closed the connection mid-request')
        return reply.code(400).send()
      }
      const e = toAppError(err)
      if (e.statusCode >= 500) req.log.error({ err: (e.cause as Error) ?? e, code: e.code }, 'request failed')
      else req.log.info({ code: e.code, status: e.statusCode, reason: e.message }, 'request rejected')
      return sendError(req, reply, e)
    })
    app.setNotFoundHandler((req, reply) => sendError(req, reply, new AppError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`.slice(0, 200))))
  },
  { name: 'errors' }
)
