// The worker as the pipeline runs it: a crashed instance's expired claims are taken back and
// analysed; a claim that expired on its last attempt becomes a dead letter; identical texts
// in one batch are analysed once.
import { sql } from 'drizzle-orm'
import t from 'tap'
import { backendEnv, backends, buildTestApp, conversation, waitFor } from '../helper.ts'

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const twoApps = backend === 'pglite' ? 'two apps on one database need PostgreSQL (a PGlite folder is one process)' : false
    t.test("a crashed instance's expired claims are reclaimed and analysed", { skip: twoApps }, async (t) => {
      const env = await backendEnv(t, backend)
      const producer = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
      const res = await producer.inject({
        method: 'POST',
        url: '/api/v1/conversations/batch',
        payload: { conversations: Array.from({ length: 5 }, () => conversation()) }
      })
      const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
      // as a crashed instance leaves them: processing, its lease run out, one attempt spent
      await producer.database.query(sql`
        UPDATE conversations SET status = 'processing', lease_owner = 'crashed-1', attempts = 1,
          lease_expires_at = now() - interval '1 second'`)
      const worker = await buildTestApp(t, env)
      await waitFor(async () => (await worker.repos.insights.getMany(ids)).length === 5, { what: 'reclaimed and analysed' })
      for (const id of ids) {
        const row = await worker.repos.conversations.getById(id)
        t.equal(row?.status, 'analyzed')
        t.equal(row?.attempts, 2, 'the reclaim counted as a new attempt')
      }
    })

    t.test('a claim that expired on its last attempt becomes a dead letter', async (t) => {
      const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false', MAX_ATTEMPTS: '3' })
      const { id } = (await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })).json()
      await app.database.query(sql`
        UPDATE conversations SET status = 'processing', lease_owner = 'crashed-2', attempts = 3,
          lease_expires_at = now() - interval '1 second' WHERE id = ${id}`)
      await app.pipeline.worker.sweep()
      const row = await app.repos.conversations.getById(id)
      t.equal(row?.status, 'failed')
      t.match(row?.lastError, /lease expired/)
    })

    t.test('identical texts in one batch are analysed once, the rest served as cached', async (t) => {
      const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false' })
      const messages = [{ role: 'user', content: 'Where is my parcel? The tracking page has not changed for ten days.' }]
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/conversations/batch',
        payload: { conversations: Array.from({ length: 4 }, () => conversation({ messages })) }
      })
      const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
      await app.pipeline.worker.start()
      await waitFor(async () => (await app.repos.insights.getMany(ids)).length === 4, { what: 'four insights' })
      const insights = await app.repos.insights.getMany(ids)
      t.equal(insights.filter((i) => !i.cached).length, 1, 'one analysed')
      t.equal(insights.filter((i) => i.cached).length, 3, 'three from the cache')
    })
  })
}
