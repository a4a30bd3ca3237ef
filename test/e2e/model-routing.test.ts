// Fallback endpoints and A/B prompts end to end: ingest → the real worker → the model
// router → two fake providers over real HTTP → insights, /health, /metrics and the summary.
import t from 'tap'
import { startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import { backendEnv, backends, buildTestApp, conversation, waitFor } from '../helper.ts'

type TestApp = Awaited<ReturnType<typeof buildTestApp>>

async function ingest(app: TestApp, n: number): Promise<string[]> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/conversations/batch',
    payload: { conversations: Array.from({ length: n }, () => conversation()) }
  })
  if (res.statusCode !== 207) throw new Error(`batch ingest answered ${res.statusCode}: ${res.body}`)
  return (res.json() as { results: { id: string }[] }).results.map((r) => r.id)
}

async function insightsOf(app: TestApp, ids: string[]) {
  const out: Array<{ model: string; prompt_version: string } | null> = []
  for (const id of ids) out.push((await app.inject({ url: `/api/v1/conversations/${id}` })).json().insight)
  return out
}

const allAnalysed = async (app: TestApp, ids: string[]) => {
  const insights = await insightsOf(app, ids)
  return insights.every(Boolean) && (insights as Array<{ model: string; prompt_version: string }>)
}

for (const backend of backends()) {
  t.test(backend, async (t) => {
    t.test('the primary down: the fallback keeps the drain going, /health and /metrics show each endpoint, the primary takes over again once it recovers', async (t) => {
      const primary = await startFakeModelServer({ errorRate: 1 })
      const fallback = await startFakeModelServer({ modelName: 'fake-2' })
      t.teardown(() => primary.close())
      t.teardown(() => fallback.close())
      const app = await buildTestApp(t, {
        ...(await backendEnv(t, backend)),
        MODEL_PROVIDER: 'openai-compatible',
        MODEL_BASE_URL: primary.url,
        MODEL_NAME: 'fake-1',
        MODEL_FALLBACKS: JSON.stringify([{ base_url: fallback.url, model: 'fake-2', price_input: 1, price_output: 2 }]),
        MODEL_MAX_RETRIES: '0',
        BREAKER_FAILURE_THRESHOLD: '2',
        BREAKER_COOLDOWN_MS: '500'
      })
      const first = await ingest(app, 30)
      const during = await waitFor(() => allAnalysed(app, first), { what: 'the first 30 analysed' })
      t.ok(during.every((i) => i.model === 'fake-2'), 'every insight names the fallback that answered')

      const health = (await app.inject({ url: '/health' })).json()
      t.equal(health.status, 'degraded', 'serving from a fallback is degraded')
      t.match(health.model_endpoints, [
        { name: 'primary', model: 'fake-1', state: /open|half_open/ },
        { name: 'fallback_1', model: 'fake-2', state: 'closed' }
      ])
      const metrics = (await app.inject({ url: '/metrics' })).body
      t.match(metrics, /^gleaner_model_endpoint_state\{endpoint="primary",model="fake-1"\} [12]$/m)
      t.match(metrics, /^gleaner_model_endpoint_state\{endpoint="fallback_1",model="fake-2"\} 0$/m)

      primary.setBehaviour({ errorRate: 0 })
      const callsBefore = primary.stats.calls
      // a probe goes to the primary once its cooldown is over; keep conversations coming until one lands there
      const recovered = await waitFor(
        async () => {
          const ids = await ingest(app, 2)
          const got = await waitFor(() => allAnalysed(app, ids), { what: 'a pair analysed' })
          return got.some((i) => i.model === 'fake-1') && got
        },
        { what: 'an insight from the recovered primary' }
      )
      t.ok(recovered.length > 0 && primary.stats.calls > callsBefore, 'the primary answers again')
      await waitFor(async () => (await app.inject({ url: '/health' })).json().status === 'ok', { what: '/health ok again' })
      const after = await ingest(app, 10)
      t.ok((await waitFor(() => allAnalysed(app, after), { what: 'the last 10' })).every((i) => i.model === 'fake-1'), 'and keeps the traffic')
    })

    t.test('PROMPT_VARIANTS: each insight records its variant and the summary compares them by prompt_version', async (t) => {
      const fake = await startFakeModelServer()
      t.teardown(() => fake.close())
      const app = await buildTestApp(t, {
        ...(await backendEnv(t, backend)),
        MODEL_PROVIDER: 'openai-compatible',
        MODEL_BASE_URL: fake.url,
        MODEL_NAME: 'fake-1',
        PROMPT_VARIANTS: 'v2:50,v2-terse:50'
      })
      const ids = await ingest(app, 40)
      const insights = await waitFor(() => allAnalysed(app, ids), { what: 'all 40 analysed' })
      const terse = insights.filter((i) => i.prompt_version === 'v2-terse').length
      t.ok(terse > 0 && terse < 40, `both variants used (${terse} terse)`)
      t.ok(insights.every((i) => i.prompt_version === 'v2' || i.prompt_version === 'v2-terse'))
      const summary = async (q: string) => (await app.inject({ url: `/api/v1/insights/summary${q}` })).json().total
      t.equal(await summary('?prompt_version=v2-terse'), terse)
      t.equal(await summary('?prompt_version=v2'), 40 - terse)
      t.equal(await summary(''), 40)
      t.equal(await summary('?prompt_version=v9'), 0)
    })
  })
}
