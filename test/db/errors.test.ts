// Which database errors mean "unavailable, retry" (503) and which are bugs (500).
import t from 'tap'
import { isDatabaseUnavailable } from '../../src/db/errors.ts'

t.test('connection-level failures are unavailability', async (t) => {
  const cases: [string, unknown][] = [
    ['refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['reset', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
    ['admin shutdown (57P01)', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })],
    ['cannot connect now (57P03)', Object.assign(new Error('the database system is starting up'), { code: '57P03' })],
    ['too many connections (53300)', Object.assign(new Error('sorry, too many clients already'), { code: '53300' })],
    ['connection exception (08006)', Object.assign(new Error('connection failure'), { code: '08006' })],
    ['pool timeout', new Error('timeout exceeded when trying to connect')],
    ['terminated', new Error('Connection terminated unexpectedly')],
    ['wrapped by the query builder', new Error('Failed query: insert …', { cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) })]
  ]
  for (const [name, err] of cases) t.equal(isDatabaseUnavailable(err), true, name)
})

t.test('query errors are not', async (t) => {
  const cases: [string, unknown][] = [
    ['syntax (42601)', Object.assign(new Error('syntax error at or near'), { code: '42601' })],
    ['unique violation (23505)', Object.assign(new Error('duplicate key'), { code: '23505' })],
    ['invalid text (22P02)', Object.assign(new Error('invalid input syntax for type uuid'), { code: '22P02' })],
    ['plain error', new Error('boom')],
    ['not an error', 'nope'],
    ['nothing', undefined]
  ]
  for (const [name, err] of cases) t.equal(isDatabaseUnavailable(err), false, name)
})
