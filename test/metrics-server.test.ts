// METRICS_PORT: /metrics moves off the main port to a listener that serves nothing else, and
// METRICS_API_KEY guards it wherever it is served. Over real HTTP on both ports.
import t from 'tap'
import { backendEnv, buildTestApp, listen, listenMetrics } from './helper.ts'

const KEY = 'metrics-secret-key'

const get = async (url: string, authorization?: string) => {
  const res = await fetch(url, { headers: authorization ? { authorization } : {} })
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() }
}

t.test('unset: /metrics is served on the main port, as before', async (t) => {
  const env = { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false' }
  const base = await listen(await buildTestApp(t, env))
  const res = await get(`${base}/metrics`)
  t.equal(res.status, 200)
  t.match(res.text, /^gleaner_queue_depth /m)
})

t.test('set: /metrics is on the metrics listener only, with the main port’s figures; the main port answers 404', async (t) => {
  const env = { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', METRICS_PORT: '9464' }
  const app = await buildTestApp(t, env)
  const base = await listen(app)
  const metricsBase = await listenMetrics(t, app, env)

  const main = await get(`${base}/metrics`)
  t.equal(main.status, 404, 'not on the public port')
  t.equal(JSON.parse(main.text).error.code, 'NOT_FOUND', 'in the contract’s error shape')
  t.equal((await get(`${base}/api/v1/taxonomy`)).status, 200, 'the API is still on the main port')

  const scrape = await get(`${metricsBase}/metrics`)
  t.equal(scrape.status, 200)
  t.match(scrape.type, /^text\/plain/)
  t.match(scrape.text, /^gleaner_http_requests_total\{method="GET",route="\/api\/v1\/taxonomy",status="200"\} 1$/m, 'the app’s own registry')
  t.equal((await get(`${metricsBase}/api/v1/taxonomy`)).status, 404, 'the metrics listener serves nothing else')
  const openapi = (await app.inject({ url: '/docs/json' })).json() as { paths: Record<string, unknown> }
  t.notOk('/metrics' in openapi.paths, 'and the main port’s OpenAPI document no longer lists it')
})

t.test('METRICS_API_KEY guards /metrics on the main port', async (t) => {
  const env = { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', METRICS_API_KEY: KEY }
  const base = await listen(await buildTestApp(t, env))
  const refused = await get(`${base}/metrics`)
  t.equal(refused.status, 401)
  t.equal(JSON.parse(refused.text).error.code, 'UNAUTHORIZED')
  t.equal((await get(`${base}/metrics`, 'Bearer wrong-metrics-key')).status, 401, 'a wrong key is refused')
  t.equal((await get(`${base}/metrics`, `Bearer ${KEY}`)).status, 200)
})

t.test('METRICS_API_KEY guards /metrics on the metrics listener too', async (t) => {
  const env = { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', METRICS_API_KEY: KEY, METRICS_PORT: '9464' }
  const app = await buildTestApp(t, env)
  const metricsBase = await listenMetrics(t, app, env)
  const refused = await get(`${metricsBase}/metrics`)
  t.equal(refused.status, 401)
  t.equal(JSON.parse(refused.text).error.code, 'UNAUTHORIZED')
  t.equal((await get(`${metricsBase}/metrics`, 'Bearer wrong-metrics-key')).status, 401, 'a wrong key is refused')
  const ok = await get(`${metricsBase}/metrics`, `Bearer ${KEY}`)
  t.equal(ok.status, 200)
  t.match(ok.text, /^gleaner_queue_depth /m)
})
