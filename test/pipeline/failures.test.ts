// The failure table: what each kind of failure costs the conversations, the breaker and
// the batch size.
import t from 'tap'
import { ModelCallError } from '../../src/analyzers/analyzer.ts'
import {
  classifyFailure,
  itemFailureReason,
  MAX_OUTAGE_RELEASE_DELAY_MS,
  MAX_RETRY_DELAY_MS,
  retryDelayMs
} from '../../src/pipeline/failures.ts'

const ctx = { aborted: false, retryBaseMs: 2_000 }
const dbDown = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })

t.test('every kind of failure has its row in the table', async (t) => {
  const cases: [string, unknown, typeof ctx, Record<string, unknown>][] = [
    [
      'a refused request uses an attempt and counts for the breaker, without shrinking batches',
      new ModelCallError('rejected', 'model endpoint refused the request (400)'),
      ctx,
      { reason: 'rejected', attemptUsed: true, breakerFailure: true, shrinkBatch: null, level: 'warn' }
    ],
    [
      'a model outage uses no attempt, counts for the breaker and halves the batch',
      new ModelCallError('error', 'model endpoint answered 503'),
      ctx,
      { reason: 'error', attemptUsed: false, releaseDelayMs: 2_000, breakerFailure: true, shrinkBatch: 'error' }
    ],
    [
      'a timeout is an outage too',
      new ModelCallError('timeout', 'no answer within 60000 ms'),
      ctx,
      { reason: 'timeout', attemptUsed: false, breakerFailure: true, shrinkBatch: 'timeout' }
    ],
    [
      'a rate limit hands the rows back after the provider’s Retry-After',
      new ModelCallError('rate_limited', 'rate limited (429)', 7_000),
      ctx,
      { reason: 'rate_limited', attemptUsed: false, releaseDelayMs: 7_000, breakerFailure: true, shrinkBatch: 'rate_limited' }
    ],
    [
      'a shutdown hands the rows back at once, telling nobody',
      new Error('shutting down'),
      { ...ctx, aborted: true },
      { reason: 'shutdown', attemptUsed: false, releaseDelayMs: 0, breakerFailure: false, shrinkBatch: null }
    ],
    [
      'an unreachable database uses no attempt and is not the model’s fault',
      dbDown,
      ctx,
      { reason: 'database_unavailable', attemptUsed: false, releaseDelayMs: 2_000, breakerFailure: false, shrinkBatch: null }
    ],
    [
      'anything else is internal: an attempt, logged as an error',
      new TypeError('cannot read properties of undefined'),
      ctx,
      { reason: 'internal', attemptUsed: true, breakerFailure: false, shrinkBatch: null, level: 'error' }
    ],
    ['a thrown non-error is internal too', 'a string', ctx, { reason: 'internal', attemptUsed: true }]
  ]
  for (const [name, err, c, expected] of cases) t.match(classifyFailure(err, c), expected, name)
})

t.test('a model error during shutdown is still a model error: the call had failed already', async (t) => {
  t.match(classifyFailure(new ModelCallError('error', 'the model client was closed'), { ...ctx, aborted: true }), {
    reason: 'error',
    breakerFailure: true
  })
})

t.test('an honoured Retry-After is capped, so a provider cannot park the backlog', async (t) => {
  const plan = classifyFailure(new ModelCallError('rate_limited', '429', 3_600_000), ctx)
  t.equal(plan.releaseDelayMs, MAX_OUTAGE_RELEASE_DELAY_MS)
})

t.test('an item failure counts under the analyzer’s reason, or internal when it gives none', async (t) => {
  t.equal(itemFailureReason('invalid_output'), 'invalid_output')
  t.equal(itemFailureReason('timeout'), 'timeout')
  t.equal(itemFailureReason(undefined), 'internal')
})

t.test('the back-off doubles per attempt from RETRY_BASE_MS and is capped', async (t) => {
  t.same(
    [1, 2, 3, 4].map((a) => retryDelayMs(a, 2_000)),
    [2_000, 4_000, 8_000, 16_000]
  )
  t.equal(retryDelayMs(0, 2_000), 2_000, 'no attempt counted yet is the first back-off')
  t.equal(retryDelayMs(40, 2_000), MAX_RETRY_DELAY_MS)
})
