// Live streams under hostile load: capped per key and per instance, answered 503 (not left
// hanging) when the database is down, nothing leaked after, one fan-out serving hundreds
// of clients, and a client that stops reading dropped without holding up anyone else.

import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import type { App } from '../../src/app.ts'
import { backendEnv, body, buildTestApp, conversation, listen, waitFor } from '../helper.ts'
import { pgClusterSkip, startCluster } from '../pg-cluster.ts'

const STREAM = '/api/v1/insights/stream'

async function open(base: string, key?: string) {
  const res = await request(`${base}${STREAM}`, { headers: { accept: 'text/event-stream', ...(key ? { authorization: `Bearer ${key}` } : {}) } })
  let text = ''
  if (res.statusCode === 200) {
    res.body.on('data', (chunk: Buffer) => {
      text += chunk.toString()
    })
    res.body.on('error', () => {})
  } else text = await res.body.text()
  return { res, close: () => res.body.destroy(), text: () => text }
}

const gauge = async (app: App) => (await app.metrics.streamClients.get()).values[0]?.value ?? 0
const refused = async (app: App, reason: string) => (await app.metrics.streamRefused.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0

t.test('streams are capped per key (429) and per instance (503), and a closed one frees its slot', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', WORKER_ENABLED: 'false', STREAM_MAX_PER_KEY: '2', STREAM_MAX: '3' })
  const base = await listen(app)
  const keyA = (await app.repos.apiKeys.create({ name: `a-${Date.now()}`, scopes: ['read'], tier: 'pro' })).key
  const keyB = (await app.repos.apiKeys.create({ name: `b-${Date.now()}`, scopes: ['read'], tier: 'pro' })).key
  const a1 = await open(base, keyA)
  const a2 = await open(base, keyA)
  const a3 = await open(base, keyA)
  t.same([a1.res.statusCode, a2.res.statusCode, a3.res.statusCode], [200, 200, 429], 'the third stream of one key is refused')
  t.equal(JSON.parse(a3.text()).error.code, 'RATE_LIMITED')
  const b1 = await open(base, keyB)
  const b2 = await open(base, keyB)
  t.same([b1.res.statusCode, b2.res.statusCode], [200, 503], 'the instance is full at three')
  t.ok(Number(b2.res.headers['retry-after']) >= 1, 'Retry-After on the 503')
  t.equal(await refused(app, 'per_key_limit'), 1)
  t.equal(await refused(app, 'instance_limit'), 1)
  a1.close()
  await waitFor(async () => (await gauge(app)) === 2, { what: 'the closed stream released' })
  const b3 = await open(base, keyB)
  t.equal(b3.res.statusCode, 200, 'a freed slot is usable again')
  for (const s of [a2, b1, b3]) s.close()
  await waitFor(async () => (await gauge(app)) === 0, { what: 'all released' })
  t.equal(app.pipeline.insights.clients, 0, 'no bus subscription left')
})

t.test('one insight reaches 300 streams, and all are released after', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), STREAM_MAX_PER_KEY: '1000', STREAM_MAX: '1000' })
  const base = await listen(app)
  const streams = await Promise.all(Array.from({ length: 300 }, () => open(base)))
  t.ok(streams.every((s) => s.res.statusCode === 200), 'all 300 open')
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  await waitFor(() => streams.every((s) => s.text().includes('event: insight')), { what: 'the insight on every stream' })
  t.equal(app.pipeline.insights.clients, 1, 'one bus subscription serves them all')
  for (const s of streams) s.close()
  await waitFor(async () => (await gauge(app)) === 0, { what: 'all released' })
  t.equal(app.pipeline.insights.clients, 0)
})

t.test('during a database outage streams are answered 503 and nothing leaks', { skip: pgClusterSkip }, async (t) => {
  const cluster = await startCluster(t)
  const app = await buildTestApp(t, { DATABASE_URL: cluster.url, STREAM_SUBSCRIBE_TIMEOUT_MS: '300', STREAM_MAX_PER_KEY: '1000' })
  const base = await listen(app)
  await cluster.stop()
  const during = await Promise.all(Array.from({ length: 50 }, () => open(base)))
  t.same(
    during.map((s) => s.res.statusCode),
    Array(50).fill(503),
    'all 50 answered 503'
  )
  t.match(JSON.parse(during[0]!.text()), { error: { code: 'UNAVAILABLE' } })
  t.ok(Number(during[0]!.res.headers['retry-after']) >= 1, 'with Retry-After')
  t.equal(await gauge(app), 0, 'the gauge is back to 0')
  t.equal(app.pipeline.insights.clients, 0, 'no subscriber left behind')
  t.equal(await refused(app, 'unavailable'), 50)

  await cluster.start()
  const after = await waitFor(
    async () => {
      const s = await open(base)
      if (s.res.statusCode === 200) return s
      return undefined
    },
    { what: 'a stream once the database is back' }
  )
  t.equal(after.res.statusCode, 200, 'streams open again once the database is back')
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  await waitFor(() => after.text().includes('event: insight'), { what: 'an insight after recovery' })
  after.close()
  await waitFor(async () => (await gauge(app)) === 0, { what: 'released' })
})

/** A customer message whose first sentence fills a summary: the largest events the local analyzer makes. */
const longSummary = (i: number) =>
  conversation({
    messages: [
      {
        role: 'user',
        content: `My invoice ${i} is wrong because I was charged twice this month for the same plan and the second charge ${'still has not been refunded and nobody answers my emails about it '.repeat(3)}`
      }
    ]
  })

/** Batches sent before giving up: here about 70 fill the socket buffers and the 1 MiB bound. */
const MAX_BATCHES = 200
const BATCH = 100

t.test('a stream client that stops reading is dropped past the buffer bound; other streams and ingest carry on', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), RATE_LIMIT_ANONYMOUS: '10000000' })
  const base = await listen(app)
  const dropped = async () => (await app.metrics.streamSlowDisconnects.get()).values[0]?.value ?? 0

  // the slow client: a raw socket that reads the response head, then never reads again
  const slow = connect(Number(new URL(base).port), '127.0.0.1')
  t.teardown(() => slow.destroy())
  slow.on('error', () => {}) // the server's destroy may reach it as a reset
  await once(slow, 'connect')
  slow.write(`GET ${STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`)
  const [head] = (await once(slow, 'data')) as [Buffer]
  slow.pause()
  t.match(head.toString(), /^HTTP\/1\.1 200 /, 'the slow client’s stream opened')

  const reader = await open(base)
  t.equal(reader.res.statusCode, 200, 'a client that reads')
  await waitFor(async () => (await gauge(app)) === 2, { what: 'both streams live' })

  // ingest until the server drops the slow client; each round waits until the reading client
  // has every event so far, so the slow client's buffer is all that grows
  let batches = 0
  let events = 0
  const eventsOnReader = () => reader.text().split('event: insight').length - 1
  while ((await dropped()) === 0 && batches < MAX_BATCHES) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/conversations/batch',
      payload: { conversations: Array.from({ length: BATCH }, (_, i) => longSummary(batches * BATCH + i)) }
    })
    if (res.statusCode !== 207) t.fail(`batch ${batches + 1} answered ${res.statusCode}`)
    batches++
    events += res.json().accepted
    await waitFor(() => eventsOnReader() >= events, { what: `the reader’s ${events} events` })
  }
  t.equal(await dropped(), 1, `dropped after ${batches} batches, ${events} events: gleaner_stream_slow_disconnects_total counts it`)
  await waitFor(async () => (await gauge(app)) === 1, { what: 'the slow stream’s slot released' })

  // the slow client, reading again, finds the stream cut by the server, not ended by itself
  const closed = once(slow, 'close')
  slow.resume()
  await closed
  t.pass('the server closed the slow client’s connection')

  // everyone else carries on: ingest, the reading stream, a new stream
  const after = await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  t.equal(after.statusCode, 202, 'ingest still answers')
  const id = after.json().id as string
  await waitFor(() => reader.text().includes(`id: ${id}`), { what: 'the reading stream gets the next insight' })
  const another = await open(base)
  t.equal(another.res.statusCode, 200, 'a new stream opens')
  t.equal((await body(await fetch(`${base}/health`))).status, 'ok', 'healthy')
  t.match(await app.metrics.registry.metrics(), /^gleaner_stream_slow_disconnects_total 1$/m, 'exported as 1')
  reader.close()
  another.close()
  await waitFor(async () => (await gauge(app)) === 0, { what: 'all released' })
})
