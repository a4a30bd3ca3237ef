// One error mapping for everything: client mistakes are 4xx with a code, an unreachable
// database is 503 with Retry-After, anything else is a 500 that says nothing inside.
import t from 'tap'
import { AppError } from '../../src/errors.ts'
import { toAppError } from '../../src/plugins/errors.ts'

t.test('framework and client errors keep their 4xx and get a contract code', async (t) => {
  const fe = (statusCode: number, code: string, message = 'x') => Object.assign(new Error(message), { statusCode, code })
  t.match(toAppError(fe(415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')), { statusCode: 415, code: 'UNSUPPORTED_MEDIA_TYPE' })
  t.match(toAppError(fe(413, 'FST_ERR_CTP_BODY_TOO_LARGE')), { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' })
  t.match(toAppError(fe(400, 'FST_ERR_CTP_EMPTY_JSON_BODY')), { statusCode: 400, code: 'BAD_REQUEST' })
  t.match(toAppError(fe(414, 'FST_ERR_MAX_PARAM_LENGTH')), { statusCode: 400, code: 'BAD_REQUEST', message: /too long/ })
  t.match(toAppError(fe(429, 'X')), { statusCode: 429, code: 'RATE_LIMITED' })
  const v = Object.assign(new Error('body/source must match pattern'), {
    statusCode: 400,
    validation: [{ instancePath: '/messages/0/role', keyword: 'enum', params: { allowedValues: ['user', 'assistant'] }, message: 'x' }],
    validationContext: 'body'
  })
  t.match(toAppError(v), { statusCode: 400, code: 'VALIDATION_FAILED', message: 'messages[0].role must be one of user, assistant' })
})

t.test('an unreachable database is 503 with Retry-After', async (t) => {
  const e = toAppError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
  t.match(e, { statusCode: 503, code: 'UNAVAILABLE' })
  t.ok(e.retryAfter && e.retryAfter > 0)
})

t.test('anything else is a 500 that tells the client nothing', async (t) => {
  const e = toAppError(new Error('relation "conversations" does not exist at /work/main/src/db/conversations.ts:42'))
  t.match(e, { statusCode: 500, code: 'INTERNAL', message: 'internal error' })
  t.equal(toAppError(new AppError('NOT_FOUND', 'conversation not found')).statusCode, 404, 'our own errors pass through')
})
