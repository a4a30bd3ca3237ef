// Ingest and the conversation read, through Fastify's inject, on both back ends.
import t from 'tap'
import { backendEnv, backends, buildTestApp, conversation } from '../helper.ts'

for (const backend of backends()) {
  t.test(backend, async (t) => {
    // the worker is off here: these tests are about what ingest stores and answers
    const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false' })
    const post = (body: unknown, url = '/api/v1/conversations') =>
      app.inject({ method: 'POST', url, payload: body as object })

    t.test('a new conversation is stored and answered 202 pending', async (t) => {
      const res = await post(conversation())
      t.equal(res.statusCode, 202)
      const body = res.json()
      t.match(body, { id: String, status: 'pending', duplicate: false })
      const row = await app.repos.conversations.getById(body.id)
      t.equal(row?.status, 'pending', 'committed before the answer')
      t.equal(app.pipeline.queue.size > 0, true, 'and queued for the worker')
    })

    t.test('the same (source, external_id) again is a 200 duplicate with the first id', async (t) => {
      const c = conversation()
      const first = (await post(c)).json()
      const again = await post({ ...c, messages: [{ role: 'user', content: 'something else entirely, different text' }] })
      t.equal(again.statusCode, 200)
      t.same(again.json(), { id: first.id, status: 'pending', duplicate: true })
      const other = await post({ ...c, source: 'email' })
      t.equal(other.statusCode, 202, 'same external_id under another source is a new conversation')
    })

    t.test('conversations without external_id are never duplicates', async (t) => {
      const { external_id: _, ...c } = conversation()
      const a = (await post(c)).json()
      const b = (await post(c)).json()
      t.not(a.id, b.id)
      t.equal(b.duplicate, false)
    })

    t.test('the prefilter skips low-value conversations at ingest with a reason, counted by reason', async (t) => {
      const skips = async () =>
        Object.fromEntries((await app.metrics.prefilterSkips.get()).values.map((v) => [String(v.labels.reason), v.value]))
      const before = await skips()
      const cases: [unknown[], string][] = [
        [[{ role: 'assistant', content: 'Hello, how can I help you today?' }], 'no_user_message'],
        [[{ role: 'user', content: 'hi' }], 'boilerplate_only'],
        [[{ role: 'user', content: 'https://example.com/a/b/c' }], 'links_only'],
        [[{ role: 'user', content: 'it broke' }], 'too_short']
      ]
      for (const [messages, reason] of cases) {
        const res = await post(conversation({ messages }))
        t.equal(res.statusCode, 202, reason)
        t.equal(res.json().status, 'skipped', reason)
        const row = await app.repos.conversations.getById(res.json().id)
        t.equal(row?.skipReason, reason)
      }
      const after = await skips()
      for (const [, reason] of cases) t.equal((after[reason] ?? 0) - (before[reason] ?? 0), 1, `one ${reason} counted`)
      const dup = conversation({ messages: [{ role: 'user', content: 'hi' }] })
      await post(dup)
      await post(dup)
      t.equal((await skips()).boilerplate_only, (after.boilerplate_only ?? 0) + 1, 'a duplicate is not counted again')
    })

    t.test('a batch stores valid items and rejects invalid ones one by one', async (t) => {
      const dup = conversation()
      await post(dup)
      const res = await post(
        {
          conversations: [
            conversation(),
            { source: 'web-chat', messages: [] },
            dup,
            conversation({ source: 'bad source!' }),
            conversation({ messages: [{ role: 'user', content: 'hi' }] }),
            conversation({ extra: 1 })
          ]
        },
        '/api/v1/conversations/batch'
      )
      t.equal(res.statusCode, 207)
      const body = res.json()
      t.equal(body.results.length, 6)
      t.match(body.results[0], { index: 0, id: String, status: 'pending', duplicate: false })
      t.match(body.results[1], { index: 1, error: { code: 'VALIDATION_FAILED', message: /messages/ } })
      t.match(body.results[2], { index: 2, duplicate: true })
      t.match(body.results[3], { index: 3, error: { code: 'VALIDATION_FAILED', message: /conversations\[3\]\.source/ } })
      t.match(body.results[4], { index: 4, status: 'skipped' })
      t.match(body.results[5], { index: 5, error: { message: /conversations\[5\]\.extra/ } })
      t.same([body.accepted, body.duplicates, body.rejected], [2, 1, 3])
    })

    t.test('a key repeated inside one batch resolves to the first item', async (t) => {
      const c = conversation()
      const res = await post({ conversations: [c, c] }, '/api/v1/conversations/batch')
      const [a, b] = res.json().results
      t.equal(a.duplicate, false)
      t.equal(b.duplicate, true)
      t.equal(a.id, b.id)
    })

    t.test('a 1000-item batch is one transaction and every item gets a result', async (t) => {
      const items = Array.from({ length: 1000 }, () => conversation())
      const res = await post({ conversations: items }, '/api/v1/conversations/batch')
      t.equal(res.statusCode, 207)
      t.equal(res.json().accepted, 1000)
      const tooMany = await post({ conversations: [...items, conversation()] }, '/api/v1/conversations/batch')
      t.equal(tooMany.statusCode, 400)
      t.equal(tooMany.json().error.code, 'VALIDATION_FAILED')
    })

    t.test('GET a conversation returns it with status and no insight yet; unknown ids are 404', async (t) => {
      const c = conversation({ metadata: { plan: 'pro', nested: { a: [1, 2] } } })
      const { id } = (await post(c)).json()
      const res = await app.inject({ method: 'GET', url: `/api/v1/conversations/${id}` })
      t.equal(res.statusCode, 200)
      t.match(res.json(), {
        id,
        source: c.source,
        external_id: c.external_id,
        messages: c.messages,
        metadata: { plan: 'pro', nested: { a: [1, 2] } },
        status: 'pending',
        attempts: 0,
        insight: null,
        analyzed_at: null
      })
      for (const bad of ['00000000-0000-0000-0000-000000000000', 'not-a-uuid', "1'%20OR%20'1'='1"]) {
        const r = await app.inject({ method: 'GET', url: `/api/v1/conversations/${bad}` })
        t.equal(r.statusCode, 404, bad)
        t.equal(r.json().error.code, 'NOT_FOUND')
      }
    })

    t.test('text PostgreSQL cannot store is cleaned, emoji and RTL stored intact', async (t) => {
      const content = 'Bad \u0000 invoice \ud800 again 😡 الفاتورة خاطئة עברית please refund me now'
      const res = await post(conversation({ messages: [{ role: 'user', content }] }))
      t.equal(res.statusCode, 202)
      const got = (await app.inject({ method: 'GET', url: `/api/v1/conversations/${res.json().id}` })).json()
      t.equal(got.messages[0].content, 'Bad  invoice \ufffd again 😡 الفاتورة خاطئة עברית please refund me now')
    })

    t.test('SQL-looking strings are stored as data', async (t) => {
      const content = "'); DROP TABLE conversations; -- my invoice is wrong please help"
      const res = await post(conversation({ external_id: "x'; DELETE FROM insights; --", messages: [{ role: 'user', content }] }))
      t.equal(res.statusCode, 202)
      const got = (await app.inject({ method: 'GET', url: `/api/v1/conversations/${res.json().id}` })).json()
      t.equal(got.messages[0].content, content)
    })

    t.test('when the in-process queue is full ingest still commits, and the rows stay pending', async (t) => {
      const small = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false', QUEUE_MAX: '2' })
      const ids: string[] = []
      for (let i = 0; i < 5; i++) {
        const r = await small.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
        t.equal(r.statusCode, 202)
        ids.push(r.json().id)
      }
      t.equal(small.pipeline.queue.size, 2)
      t.equal(small.pipeline.queue.overflowed, true)
      const rows = await Promise.all(ids.map((id) => small.repos.conversations.getById(id)))
      t.same(
        rows.map((r) => r?.status),
        ['pending', 'pending', 'pending', 'pending', 'pending']
      )
    })

    t.test('every ingest outcome is counted, rejections on the single route included', async (t) => {
      await post({ source: 'counted-src', messages: [] })
      await post({ ...conversation(), source: 'bad source!' })
      await post(conversation({ source: 'counted-src' }))
      const m = await app.metrics.registry.getSingleMetricAsString('gleaner_conversations_ingested_total')
      t.match(m, /source="counted-src",outcome="rejected"\} 1/)
      t.match(m, /source="invalid",outcome="rejected"\} [1-9]/)
      t.match(m, /source="counted-src",outcome="accepted"\} 1/)
    })
  })
}
