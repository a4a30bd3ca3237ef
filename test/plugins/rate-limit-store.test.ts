// The rate limiter against a real redis-server that goes down or hangs: requests keep being
// answered, limits hold per RATE_LIMIT_ON_STORE_ERROR, and /health, /health/ready and the
// metrics say so.

import t from 'tap'
import { startRedis, type TestRedis } from '../../loadtest/redis-server.ts'
import type { App } from '../../src/app.ts'
import { backendEnv, buildTestApp, waitFor } from '../helper.ts'

const LIMIT = 3

async function appWith(t: { teardown(fn: () => unknown): void }, redis: TestRedis, policy: string) {
  const app = await buildTestApp(t, {
    ...(await backendEnv(t, 'pglite')),
    AUTH: 'on',
    WORKER_ENABLED: 'false',
    REDIS_URL: redis.url,
    RATE_LIMIT_ON_STORE_ERROR: policy,
    RATE_LIMIT_FREE: String(LIMIT),
    REDIS_COMMAND_TIMEOUT_MS: '200',
    REDIS_RETRY_MS: '200'
  })
  const { key } = await app.repos.apiKeys.create({ name: `rl-${policy}-${Date.now()}`, scopes: ['read'], tier: 'free' })
  const read = () => app.inject({ url: '/api/v1/insights', headers: { authorization: `Bearer ${key}` } })
  return { app, read }
}

const health = async (app: App) => (await app.inject({ url: '/health' })).json()
const metric = async (app: App, name: string) => {
  const text = await app.metrics.registry.metrics()
  return text.split('\n').filter((l) => l.startsWith(name))
}

t.test('Redis down, policy local: limits hold in process, health says degraded and why', async (t) => {
  const redis = await startRedis(t)
  const { app, read } = await appWith(t, redis, 'local')
  t.equal((await health(app)).rate_limit_store.degraded_reason, null, 'healthy while Redis answers')
  await redis.stop()
  const statuses: number[] = []
  for (let i = 0; i < LIMIT + 2; i++) statuses.push((await read()).statusCode)
  t.same(statuses, [200, 200, 200, 429, 429], 'the same limit, counted in this process: never unlimited')
  const h = await health(app)
  t.equal(h.status, 'degraded')
  t.match(h.rate_limit_store, { policy: 'local', degraded_reason: /^redis: /, degraded_since: String })
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 200, 'still ready: it serves, with local limits')
  t.match(ready.json().checks.rate_limit_store, { ok: true, error: /redis/ })
  t.same(await metric(app, 'gleaner_rate_limit_store_degraded '), ['gleaner_rate_limit_store_degraded 1'])
  t.match((await metric(app, 'gleaner_rate_limit_store_fallbacks_total{'))[0], /policy="local"} [1-9]/)

  await redis.start()
  await waitFor(async () => (await read()).statusCode && (await health(app)).rate_limit_store.degraded_reason === null, { what: 'recovery' })
  t.equal((await health(app)).status, 'ok', 'ok again once Redis answers')
  t.same(await metric(app, 'gleaner_rate_limit_store_degraded '), ['gleaner_rate_limit_store_degraded 0'])
})

t.test('Redis hung (SIGSTOP): requests are still answered and limits hold', async (t) => {
  const redis = await startRedis(t)
  const { app, read } = await appWith(t, redis, 'local')
  redis.hang()
  const statuses: number[] = []
  for (let i = 0; i < LIMIT + 2; i++) statuses.push((await read()).statusCode)
  t.same(statuses, [200, 200, 200, 429, 429], 'answered despite a Redis that never replies')
  t.match((await health(app)).rate_limit_store.degraded_reason, /timed out/i, 'the reason is the timeout')
  redis.resume()
  await waitFor(async () => (await read()).statusCode && (await health(app)).status === 'ok', { what: 'recovery after SIGCONT' })
  t.pass('recovers when Redis answers again')
})

t.test('Redis down, policy open: no limit, and health says so', async (t) => {
  const redis = await startRedis(t)
  const { app, read } = await appWith(t, redis, 'open')
  await redis.stop()
  const statuses: number[] = []
  for (let i = 0; i < LIMIT + 2; i++) statuses.push((await read()).statusCode)
  t.same(statuses, [200, 200, 200, 200, 200], 'open: served beyond the limit')
  t.match((await health(app)).rate_limit_store, { policy: 'open', degraded_reason: /redis/ })
})

t.test('Redis down, policy closed: 503 with Retry-After, and not ready', async (t) => {
  const redis = await startRedis(t)
  const { app, read } = await appWith(t, redis, 'closed')
  t.equal((await read()).statusCode, 200, 'served while Redis answers')
  await redis.stop()
  const res = await read()
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'UNAVAILABLE')
  t.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After')
  const ready = await app.inject({ url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json().checks.rate_limit_store, { ok: false, error: /redis/ })
  t.equal((await app.inject({ url: '/health' })).statusCode, 200, 'liveness is unaffected: a restart would not help')
})
