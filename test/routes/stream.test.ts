// Live stream over real HTTP: events arrive, filters apply, heartbeats flow, disconnects are
// cleaned up, and on PostgreSQL an insight stored by one instance reaches a client of another.

import t from 'tap'
import { request } from 'undici'
import { backendEnv, backends, buildTestApp, conversation, listen, waitFor } from '../helper.ts'

/** Opens a stream and collects parsed events until closed. */
async function openStream(url: string) {
  const res = await request(url, { headers: { accept: 'text/event-stream' } })
  const events: { event: string; data: Record<string, unknown> }[] = []
  let raw = ''
  const done = (async () => {
    try {
      for await (const chunk of res.body) {
        raw += chunk.toString()
        let i = raw.indexOf('\n\n')
        while (i >= 0) {
          const block = raw.slice(0, i)
          raw = raw.slice(i + 2)
          const ev = /^event: (.+)$/m.exec(block)?.[1]
          const data = /^data: (.+)$/m.exec(block)?.[1]
          if (ev && data) events.push({ event: ev, data: JSON.parse(data) })
          if (block.includes(': heartbeat')) events.push({ event: 'heartbeat', data: {} })
          i = raw.indexOf('\n\n')
        }
      }
    } catch {}
  })()
  return { res, events, close: () => res.body.destroy(), done }
}

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), STREAM_HEARTBEAT_MS: '200' })
    const base = await listen(app)

    t.test('new insights arrive as events, filtered, with heartbeats', async (t) => {
      const all = await openStream(`${base}/api/v1/insights/stream`)
      const email = await openStream(`${base}/api/v1/insights/stream?source=email`)
      t.equal(all.res.statusCode, 200)
      t.match(all.res.headers['content-type'], /text\/event-stream/)
      t.ok(all.res.headers['x-content-type-options'], 'security headers on the stream too')
      await waitFor(() => app.metrics.streamClients.get().then((m) => m.values[0]?.value === 2))
      await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation({ source: 'web-chat' }) })
      await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation({ source: 'email' }) })
      await waitFor(() => all.events.filter((e) => e.event === 'insight').length === 2, { what: 'two events' })
      await waitFor(() => email.events.some((e) => e.event === 'insight'), { what: 'email event' })
      await waitFor(() => all.events.some((e) => e.event === 'heartbeat'), { what: 'heartbeat' })
      t.same(
        email.events.filter((e) => e.event === 'insight').map((e) => e.data.source),
        ['email'],
        'the filtered stream saw only its source'
      )
      t.match(all.events.find((e) => e.event === 'insight')?.data, { conversation_id: String, sentiment: String, model: 'local-linear-v3' })
      all.close()
      email.close()
      await waitFor(() => app.metrics.streamClients.get().then((m) => m.values[0]?.value === 0), { what: 'clients cleaned up' })
      t.equal(app.pipeline.insights.clients, 0, 'no subscriber left behind')
    })

    t.test('a stream with a malformed filter is a 400 before it opens', async (t) => {
      const bad = await app.inject({ url: '/api/v1/insights/stream?sentiment=angry' })
      t.equal(bad.statusCode, 400)
      t.equal(bad.json().error.code, 'VALIDATION_FAILED')
    })

    t.test('a stream needs a key with the read scope', async (t) => {
      const secured = await buildTestApp(t, { ...(await backendEnv(t, backend)), AUTH: 'on', WORKER_ENABLED: 'false' })
      const securedBase = await listen(secured)
      const key = async (scopes: ('ingest' | 'read')[]) => (await secured.repos.apiKeys.create({ name: scopes.join('+'), scopes, tier: 'free' })).key
      const url = '/api/v1/insights/stream'
      t.equal((await secured.inject({ url })).statusCode, 401, 'no key')
      t.equal((await secured.inject({ url, headers: { authorization: `Bearer ${await key(['ingest'])}` } })).statusCode, 403, 'a producer key')
      const readKey = await key(['read'])
      const res = await request(`${securedBase}${url}`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${readKey}` } })
      t.equal(res.statusCode, 200, 'a read key opens it')
      t.match(res.headers['content-type'], /text\/event-stream/)
      res.body.destroy()
    })

    if (backend === 'postgres') {
      t.test('an insight stored by another instance reaches this stream', async (t) => {
        const env = await backendEnv(t, backend)
        const reader = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
        const writer = await buildTestApp(t, env)
        const readerBase = await listen(reader)
        const s = await openStream(`${readerBase}/api/v1/insights/stream`)
        await waitFor(() => reader.pipeline.insights.clients === 1)
        const res = await writer.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
        await waitFor(() => s.events.some((e) => e.event === 'insight' && e.data.conversation_id === res.json().id), {
          what: 'cross-instance event'
        })
        t.pass('the reader (no worker) saw the writer\'s insight')
        s.close()
      })
    }
  })
}
