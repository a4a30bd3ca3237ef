// Erasure over HTTP on both back ends: a conversation goes with its insight and cache entry,
// the summary stops counting it, the audit row names ids but no content, a repeat erases
// nothing, and only an admin key may ask.
import { Writable } from 'node:stream'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { cacheKey } from '../../src/pipeline/normalize.ts'
import { backendEnv, backends, buildTestApp, conversation, truncate, waitFor } from '../helper.ts'

type TestApp = Awaited<ReturnType<typeof buildTestApp>>

/** Ingests conversations and waits until the worker has analysed all of them. */
async function analysed(app: TestApp, items: Record<string, unknown>[]): Promise<string[]> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload: { conversations: items } })
  const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
  await waitFor(async () => (await app.repos.insights.getMany(ids)).length === ids.length, { what: 'every conversation analysed' })
  return ids
}

const total = async (app: TestApp) => (await app.inject({ url: '/api/v1/insights/summary' })).json().total as number

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const lines: string[] = []
    const capture = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString())
        done()
      }
    })
    const app = await buildTestApp(t, await backendEnv(t, backend), { logger: pino({ level: 'info' }, capture) })
    t.beforeEach(async () => {
      await truncate(app.database, ['conversations', 'conversation_keys', 'conversation_queue', 'insights', 'analysis_cache', 'erasures'])
    })

    t.test('DELETE erases the conversation, its insight, its cache entry and its counts, once', async (t) => {
      const secret = 'My card 4111 is charged twice, this is Jane Roe'
      const [id, other] = await analysed(app, [
        conversation({ messages: [{ role: 'user', content: secret }] }),
        conversation()
      ])
      const row = await app.repos.conversations.getById(id!)
      const { analyzer } = app.pipeline
      const key = cacheKey(row!.textHash, analyzer.model, analyzer.promptVersion)
      const cached = async () => (await app.database.query<{ key: string }>(sql`SELECT key FROM analysis_cache WHERE key = ${key}`)).length
      // the local analyzer caches in memory only; a model analyzer's entry is in the table, as here
      await app.repos.analysisCache.putMany([{ key, model: analyzer.model, promptVersion: analyzer.promptVersion, insight: row!.insight! }], 3600)
      t.equal(await cached(), 1, 'its analysis was cached')
      t.ok((await app.pipeline.cache.lookup([key])).has(key), 'and is in memory')
      t.equal(await total(app), 2)

      const res = await app.inject({ method: 'DELETE', url: `/api/v1/conversations/${id}` })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { erased: 1, conversation_ids: [id], more: false, audit_id: String })
      t.equal((await app.inject({ url: `/api/v1/conversations/${id}` })).statusCode, 404, 'the conversation is gone')
      t.equal(await app.repos.insights.getByConversation(id!), null, 'its insight is gone')
      t.equal(await cached(), 0, 'its cache entry is gone')
      t.notOk((await app.pipeline.cache.lookup([key])).has(key), 'from memory too')
      t.equal(await total(app), 1, 'the summary no longer counts it')
      t.ok(await app.repos.insights.getByConversation(other!), 'the other conversation is untouched')

      const audit = await app.database.query<Record<string, unknown>>(sql`SELECT * FROM erasures`)
      t.equal(audit.length, 1)
      t.match(audit[0], { actor: 'auth-off', selector: 'id', erased: 1 })
      t.notMatch(JSON.stringify(audit), /Jane|4111|charged/, 'the audit row holds no content')
      const logged = lines.filter((l) => l.includes('"audit":"erasure"')).join('')
      t.match(logged, /"erased":1/)
      t.notMatch(logged, /Jane|4111|charged/, 'the audit line holds no content')

      const again = await app.inject({ method: 'DELETE', url: `/api/v1/conversations/${id}` })
      t.equal(again.statusCode, 200, 'a repeat is no error')
      t.match(again.json(), { erased: 0, conversation_ids: [] })
      t.equal(await total(app), 1, 'and changes no count')
    })

    t.test('POST /erasure erases by source and external_id, or by a metadata value', async (t) => {
      const ids = await analysed(app, [
        conversation({ source: 'shop', external_id: 'order-1' }),
        conversation({ metadata: { customer_id: 'cust-7' } }),
        conversation({ metadata: { customer_id: 'cust-7', plan: 'pro' } }),
        conversation({ metadata: { customer_id: 'cust-8' } })
      ])
      const byKey = await app.inject({ method: 'POST', url: '/api/v1/erasure', payload: { source: 'shop', external_id: 'order-1' } })
      t.equal(byKey.statusCode, 200)
      t.same(byKey.json().conversation_ids, [ids[0]])
      const byCustomer = await app.inject({ method: 'POST', url: '/api/v1/erasure', payload: { metadata_key: 'customer_id', metadata_value: 'cust-7' } })
      t.equal(byCustomer.statusCode, 200)
      t.same([...byCustomer.json().conversation_ids].sort(), [ids[1], ids[2]].sort())
      t.equal(await total(app), 1, 'only cust-8 is left')
      const repeat = await app.inject({ method: 'POST', url: '/api/v1/erasure', payload: { metadata_key: 'customer_id', metadata_value: 'cust-7' } })
      t.match(repeat.json(), { erased: 0, more: false }, 'idempotent')
      const audit = await app.database.query<{ selector: string; erased: number }>(sql`SELECT selector, erased FROM erasures ORDER BY at, id`)
      t.same(
        audit.map((a) => [a.selector, Number(a.erased)]),
        [
          ['external_id', 1],
          ['metadata', 2],
          ['metadata', 0]
        ],
        'every request leaves an audit row, the empty repeat too'
      )
    })

    t.test('malformed erasure requests are 400s', async (t) => {
      t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/conversations/not-an-id' })).statusCode, 400)
      for (const payload of [{}, { source: 'shop' }, { metadata_key: 'customer_id' }, { source: 'a', external_id: 'b', extra: 1 }]) {
        t.equal((await app.inject({ method: 'POST', url: '/api/v1/erasure', payload })).statusCode, 400, JSON.stringify(payload))
      }
    })
  })
}

t.test('erasure needs the admin scope', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', WORKER_ENABLED: 'false', KEY_CACHE_TTL_MS: '0' })
  const reader = (await app.repos.apiKeys.create({ name: 'analyst', scopes: ['read', 'ingest'], tier: 'free' })).key
  const admin = (await app.repos.apiKeys.create({ name: 'ops', scopes: ['admin'], tier: 'free' })).key
  const url = '/api/v1/conversations/01930000-0000-7000-8000-000000000000'
  t.equal((await app.inject({ method: 'DELETE', url })).statusCode, 401, 'no key')
  t.equal((await app.inject({ method: 'DELETE', url, headers: { authorization: `Bearer ${reader}` } })).statusCode, 403, 'a read key')
  const ok = await app.inject({ method: 'DELETE', url, headers: { authorization: `Bearer ${admin}` } })
  t.equal(ok.statusCode, 200, 'an admin key')
  const [row] = await app.database.query<{ actor: string }>(sql`SELECT actor FROM erasures`)
  t.not(row?.actor, 'auth-off', 'the audit names the key that asked')
})
