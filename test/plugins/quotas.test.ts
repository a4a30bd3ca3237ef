// Quotas per key tier, counted in the database: exceeded → 429 QUOTA_EXCEEDED with the
// reset time; duplicates do not count; a new day starts afresh.
import t from 'tap'
import { backendEnv, backends, buildTestApp, conversation } from '../helper.ts'

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const app = await buildTestApp(t, {
      ...(await backendEnv(t, backend)),
      AUTH: 'on',
      WORKER_ENABLED: 'false',
      QUOTA_FREE_DAILY: '5',
      QUOTA_FREE_MONTHLY: '7',
      RATE_LIMIT_FREE: '100000'
    })
    const { key, record } = await app.repos.apiKeys.create({ name: 'q', scopes: ['ingest', 'admin'], tier: 'free' })
    const headers = { authorization: `Bearer ${key}` }
    const one = (c = conversation()) => app.inject({ method: 'POST', url: '/api/v1/conversations', headers, payload: c })
    const batch = (n: number) =>
      app.inject({ method: 'POST', url: '/api/v1/conversations/batch', headers, payload: { conversations: Array.from({ length: n }, () => conversation()) } })

    t.test('the daily quota is enforced across single and batch ingest; duplicates are free', async (t) => {
      const c = conversation()
      t.equal((await one(c)).statusCode, 202)
      t.equal((await one(c)).statusCode, 200, 'duplicate accepted')
      t.equal((await batch(3)).statusCode, 207)
      t.equal((await one()).statusCode, 202, 'fifth conversation of the day')
      const over = await one()
      t.equal(over.statusCode, 429)
      t.match(over.json(), { error: { code: 'QUOTA_EXCEEDED', details: { period: 'day', resets_at: String, limit: 5 } } })
      t.ok(Number(over.headers['retry-after']) > 0)
      const overBatch = await batch(2)
      t.equal(overBatch.statusCode, 429, 'a batch that would pass the limit is refused whole')
      t.equal((await one(c)).statusCode, 200, 'at the limit, a re-posted conversation is still a duplicate, not refused')
      const again = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', headers, payload: { conversations: [c] } })
      t.equal(again.statusCode, 207, 'a batch of re-posts at the limit is accepted')
      t.match(again.json(), { duplicates: 1, accepted: 0 })
      const mixed = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', headers, payload: { conversations: [c, conversation()] } })
      t.equal(mixed.statusCode, 429, 'a batch with one new conversation past the limit is still refused')
      const usage = (await app.inject({ url: '/api/v1/usage', headers })).json()
      t.match(usage.keys.find((k: { id: string }) => k.id === record.id), { conversations_today: 5, daily_quota: 5, monthly_quota: 7 })
    })

    t.test('a new day starts afresh, and the month limit still holds', async (t) => {
      const tomorrow = new Date(Date.now() + 86_400_000)
      const limits = { daily: 5, monthly: 7 }
      // a day boundary can also be a month boundary; only assert the month when it is not
      const sameMonth = tomorrow.getUTCMonth() === new Date().getUTCMonth()
      const r = await app.repos.apiKeys.consumeQuota(record.id, 2, limits, tomorrow)
      t.equal(r.ok, true, 'tomorrow has a fresh daily quota')
      if (sameMonth) {
        const r2 = await app.repos.apiKeys.consumeQuota(record.id, 1, limits, tomorrow)
        t.match(r2, { ok: false, period: 'month' }, 'but the month is used up (5 + 2 = 7)')
        const again = await app.repos.apiKeys.consumeQuota(record.id, 1, { daily: 5, monthly: 100 }, tomorrow)
        t.equal(again.ok, true, 'the refused month attempt gave the day back')
      }
    })

    t.test('quota counts survive a restart: they live in the database', async (t) => {
      const fresh = await app.repos.apiKeys.usage()
      t.equal(fresh.find((k) => k.id === record.id)?.day, 5)
    })
  })
}
