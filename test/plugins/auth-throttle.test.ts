// Refused authentication is throttled per client IP before any key look-up, and every route,
// /metrics and /docs included, is under a rate limit.

import t from 'tap'
import { backendEnv, buildTestApp } from '../helper.ts'

t.test('made-up keys from one address get 429 after AUTH_FAILURES_PER_WINDOW refusals', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', WORKER_ENABLED: 'false', AUTH_FAILURES_PER_WINDOW: '5' })
  const statuses: number[] = []
  for (let i = 0; i < 8; i++) {
    const res = await app.inject({ url: '/api/v1/insights', headers: { authorization: `Bearer bogus-key-${i}-${Date.now()}` } })
    statuses.push(res.statusCode)
    if (res.statusCode === 429) {
      t.equal(res.json().error.code, 'RATE_LIMITED')
      t.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After')
    }
  }
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429, 429])
  const other = await app.inject({ url: '/api/v1/insights', remoteAddress: '10.1.2.3', headers: { authorization: 'Bearer another-bogus-key' } })
  t.equal(other.statusCode, 401, 'another address is not affected')
})

t.test('403s count as refusals too', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', WORKER_ENABLED: 'false', AUTH_FAILURES_PER_WINDOW: '3' })
  const { key } = await app.repos.apiKeys.create({ name: `ingest-only-${Date.now()}`, scopes: ['ingest'], tier: 'pro' })
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await app.inject({ url: '/api/v1/insights', headers: { authorization: `Bearer ${key}` } })).statusCode)
  t.same(statuses, [403, 403, 403, 429, 429])
})

t.test('/metrics, /docs and /docs/json are rate limited', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', WORKER_ENABLED: 'false', RATE_LIMIT_ANONYMOUS: '3' })
  for (const url of ['/metrics', '/docs/json', '/docs']) {
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await app.inject({ url, remoteAddress: `10.0.0.${url.length}` })).statusCode)
    t.equal(statuses[3], 429, `${url}: ${statuses.join(',')}`)
  }
})
