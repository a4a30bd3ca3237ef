// Refused authentication is throttled per client IP before any key look-up, counted in the
// shared store so several instances throttle together, under RATE_LIMIT_ON_STORE_ERROR when
// Redis fails; and every route, /metrics and /docs included, is under a rate limit.

import { Redis } from 'ioredis'
import t from 'tap'
import { startRedis, type TestRedis } from '../../loadtest/redis-server.ts'
import { backendEnv, body, buildTestApp, listen } from '../helper.ts'

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

// Several instances, one Redis: refusals are counted where the rate limiter counts, so N
// instances do not allow N times the refusals.

const SHARED_LIMIT = 4

async function sharedInstance(t: { teardown(fn: () => unknown): void }, redis: TestRedis, env: Record<string, string> = {}) {
  const app = await buildTestApp(t, {
    ...(await backendEnv(t, 'pglite')),
    AUTH: 'on',
    WORKER_ENABLED: 'false',
    REDIS_URL: redis.url,
    AUTH_FAILURES_PER_WINDOW: String(SHARED_LIMIT),
    REDIS_COMMAND_TIMEOUT_MS: '200',
    REDIS_RETRY_MS: '200',
    ...env
  })
  const base = await listen(app)
  let n = 0
  const get = async (authorization: string) => {
    const res = await fetch(`${base}/api/v1/insights`, { headers: { authorization } })
    await res.arrayBuffer()
    return res
  }
  return { app, base, refuse: async () => (await get(`Bearer made-up-key-${++n}-${Date.now()}`)).status, get }
}

t.test('refusals on instance A count toward instance B’s throttle through the shared Redis', async (t) => {
  const redis = await startRedis(t)
  const a = await sharedInstance(t, redis)
  const b = await sharedInstance(t, redis)
  const { key } = await b.app.repos.apiKeys.create({ name: `shared-${Date.now()}`, scopes: ['read'], tier: 'pro' })

  const onA = [await a.refuse(), await a.refuse(), await a.refuse()]
  t.same(onA, [401, 401, 401], 'A refuses three made-up keys')
  t.equal(await b.refuse(), 401, 'B refuses the fourth: the shared count reaches the limit')
  const throttled = await b.get(`Bearer ${key}`)
  t.equal(throttled.status, 429, 'B now throttles the address, even with a valid key, before any look-up')
  t.ok(Number(throttled.headers.get('retry-after')) >= 1, 'with Retry-After')
  t.equal(await a.refuse(), 429, 'A answers its next refusal 429: Redis says the address is over the limit')
  t.equal((await a.get(`Bearer ${key}`)).status, 429, 'and A now throttles the address too, without asking Redis')
})

t.test('an authenticated request costs the limiter’s one Redis command: the throttle adds none', async (t) => {
  const redis = await startRedis(t)
  const a = await sharedInstance(t, redis)
  const { key } = await a.app.repos.apiKeys.create({ name: `one-command-${Date.now()}`, scopes: ['read'], tier: 'pro' })
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const evalCalls = async () => {
    const stats = await client.info('commandstats')
    return [...stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
  }
  t.equal((await a.get(`Bearer ${key}`)).status, 200, 'warm-up: the limiter loads its script')
  const before = await evalCalls()
  for (let i = 0; i < 10; i++) t.equal((await a.get(`Bearer ${key}`)).status, 200)
  t.equal((await evalCalls()) - before, 10, 'ten requests, ten counts: the limiter’s')
  t.same(await client.keys('gleaner-auth:*'), [], 'nothing counted for the throttle')
})

t.test('Redis stopped, policy local: the throttle still holds at the limit, counted in process', async (t) => {
  const redis = await startRedis(t)
  const a = await sharedInstance(t, redis, { RATE_LIMIT_ON_STORE_ERROR: 'local' })
  t.equal(await a.refuse(), 401, 'counted in Redis while it answers')
  await redis.stop()
  const statuses: number[] = []
  for (let i = 0; i < SHARED_LIMIT + 2; i++) statuses.push(await a.refuse())
  t.same(statuses, [401, 401, 401, 401, 429, 429], 'the same limit, counted in this process: never unlimited')
  const metrics = await a.app.metrics.registry.metrics()
  t.match(metrics, /gleaner_rate_limit_store_fallbacks_total\{policy="local"\} [1-9]/, 'counted as fallbacks')
  t.match((await body(await fetch(`${a.base}/health`))).rate_limit_store, { policy: 'local', degraded_reason: /^redis: / })
})

t.test('Redis stopped, policy closed: a refusal that cannot be counted is a 503, never a free guess', async (t) => {
  const redis = await startRedis(t)
  const a = await sharedInstance(t, redis, { RATE_LIMIT_ON_STORE_ERROR: 'closed' })
  await redis.stop()
  const res = await fetch(`${a.base}/api/v1/insights`, { headers: { authorization: 'Bearer made-up-key-closed' } })
  t.equal(res.status, 503)
  t.equal((await body(res)).error.code, 'UNAVAILABLE')
  t.ok(Number(res.headers.get('retry-after')) >= 1, 'Retry-After')
})
