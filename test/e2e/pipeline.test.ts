// The whole path through a real listening server: ingest → commit → queue → worker →
// insight → analyst read, on both back ends; and restarts resuming pending work.
import t from 'tap'
import { backendEnv, backends, body, buildTestApp, conversation, listen, tempDir, waitFor } from '../helper.ts'

for (const backend of backends()) {
  t.test(backend, async (t) => {
    t.test('a posted conversation becomes an insight an analyst can read', async (t) => {
      const app = await buildTestApp(t, await backendEnv(t, backend))
      const base = await listen(app)
      const c = conversation({
        messages: [
          { role: 'user', content: 'My invoice is wrong and I was charged twice. This is unacceptable, fix it now!' },
          { role: 'assistant', content: 'Sorry about that, let me check.' }
        ]
      })
      const res = await fetch(`${base}/api/v1/conversations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(c)
      })
      t.equal(res.status, 202)
      t.ok(res.headers.get('x-request-id'), 'every response carries a request id')
      const { id } = await body(res)
      const conv = await waitFor(
        async () => {
          const r = await body(await fetch(`${base}/api/v1/conversations/${id}`))
          return r.status === 'analyzed' && r
        },
        { what: 'analysis' }
      )
      t.match(conv.insight, {
        conversation_id: id,
        source: 'web-chat',
        sentiment: 'negative',
        topics: Array,
        urgency: /high|medium/,
        model: 'local-linear-v3',
        prompt_version: 'v3.1',
        cached: false,
        tokens: { input: 0, output: 0 },
        cost_usd: 0
      })
      t.ok(conv.insight.topics.includes('billing') || conv.insight.topics.includes('invoice'), 'billing topic found')
      t.ok(conv.analyzed_at)
      t.equal(conv.attempts, 1)
      const list = await body(await fetch(`${base}/api/v1/insights?source=web-chat`))
      t.equal(list.items[0].conversation_id, id)
    })

    t.test('identical text is analysed once: the second is a cache hit', async (t) => {
      const app = await buildTestApp(t, await backendEnv(t, backend))
      const messages = [{ role: 'user', content: 'The app crashes every time I open the settings page on Android.' }]
      const a = await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation({ messages }) })
      await waitFor(async () => (await app.repos.conversations.getById(a.json().id))?.status === 'analyzed')
      // same words, different case and spacing: the same normalized text
      const b = await app.inject({
        method: 'POST',
        url: '/api/v1/conversations',
        payload: conversation({ messages: [{ role: 'user', content: '  the APP crashes every time I open the   settings page on Android.' }] })
      })
      await waitFor(async () => (await app.repos.conversations.getById(b.json().id))?.status === 'analyzed')
      const first = await app.repos.insights.getByConversation(a.json().id)
      const second = await app.repos.insights.getByConversation(b.json().id)
      t.equal(first?.cached, false)
      t.equal(second?.cached, true)
      t.same(second?.topics, first?.topics)
      t.equal(second?.summary, first?.summary)
      const metrics = await app.metrics.registry.getSingleMetricAsString('gleaner_analysis_cache_requests_total')
      t.match(metrics, /result="hit"\} 1/)
    })

    t.test('a restart resumes pending rows; nothing acknowledged is lost', async (t) => {
      const env = await backendEnv(t, backend, { dataDir: tempDir(t) })
      // first life: the worker is off, so everything stays pending
      const first = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
      const res = await first.inject({
        method: 'POST',
        url: '/api/v1/conversations/batch',
        payload: { conversations: Array.from({ length: 50 }, () => conversation()) }
      })
      const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
      t.equal(ids.length, 50)
      await first.close()
      // second life on the same database: the worker finds them
      const second = await buildTestApp(t, env)
      // wait on the insights themselves: 'no pending' can be seen while rows are still processing
      await waitFor(async () => (await second.repos.insights.getMany(ids)).length === 50, { what: 'all 50 analysed' })
      t.pass('every acknowledged conversation has its insight')
    })

    t.test('rows beyond a full queue wait in the database and are still processed', async (t) => {
      // the worker starts only after ingest, so the queue is looked at while it is full
      const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), QUEUE_MAX: '3', BATCH_MAX: '2', BATCH_INITIAL: '2', WORKER_ENABLED: 'false' })
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/conversations/batch',
        payload: { conversations: Array.from({ length: 40 }, () => conversation()) }
      })
      const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
      t.equal(ids.length, 40, 'all 40 acknowledged')
      t.equal(app.pipeline.queue.size, 3, 'the queue holds its bound and no more')
      t.equal(app.pipeline.queue.overflowed, true, 'and knows the rest wait in the database')
      await app.pipeline.worker.start()
      await waitFor(async () => (await app.repos.insights.getMany(ids)).length === 40, { what: 'all 40 analysed' })
      t.pass('all 40 analysed with a queue of 3')
    })

    t.test('health reports the worker and the queue; metrics show the pipeline', async (t) => {
      const app = await buildTestApp(t, await backendEnv(t, backend))
      await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
      await waitFor(async () => (await app.inject({ url: '/metrics' })).body.includes('gleaner_insights_stored_total{model="local-linear-v3",cached="false"} 1'))
      const h = await app.inject({ url: '/health' })
      t.equal(h.statusCode, 200)
      t.match(h.json(), { status: 'ok', worker_running: true, circuit: 'closed', queue_size: 0, version: String })
      const ready = await app.inject({ url: '/health/ready' })
      t.equal(ready.statusCode, 200)
      t.match(ready.json(), { status: 'ready', checks: { database: { ok: true } } })
      const m = (await app.inject({ url: '/metrics' })).body
      for (const name of [
        'gleaner_http_requests_total',
        'gleaner_http_request_duration_seconds',
        'gleaner_conversations_ingested_total',
        'gleaner_queue_depth',
        'gleaner_backlog_conversations',
        'gleaner_batch_size',
        'gleaner_analysis_cache_requests_total',
        'gleaner_insights_stored_total',
        'gleaner_insight_latency_seconds',
        'gleaner_circuit_state'
      ]) {
        t.match(m, new RegExp(`^# TYPE ${name} `, 'm'), name)
      }
      t.match(m, /gleaner_http_requests_total\{method="POST",route="\/api\/v1\/conversations",status="202"\} 1/)
    })
  })
}
