// Liveness and readiness: a wedged worker must never look healthy.
import t from 'tap'
import { startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import { backendEnv, buildTestApp, conversation, waitFor } from '../helper.ts'

t.test('ok while the worker makes progress', async (t) => {
  const app = await buildTestApp(t, await backendEnv(t, 'pglite'))
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  await waitFor(async () => (await app.inject({ url: '/metrics' })).body.includes('gleaner_insights_stored_total{'))
  const res = await app.inject({ url: '/health' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'ok', worker_running: true, circuit: 'closed', paused_reason: null, budget: null })
})

t.test('a worker wedged on a hung model call answers 503 stuck', async (t) => {
  const fake = await startFakeModelServer({ hang: true })
  t.teardown(() => fake.close())
  const app = await buildTestApp(t, {
    ...(await backendEnv(t, 'pglite')),
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    // a call that hangs longer than the stuck threshold: nothing finishes, nothing fails
    MODEL_TIMEOUT_MS: '60000',
    STUCK_AFTER_SECONDS: '1',
    SHUTDOWN_TIMEOUT_MS: '200'
  })
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  const res = await waitFor(
    async () => {
      const r = await app.inject({ url: '/health' })
      return r.statusCode === 503 && r
    },
    { what: '503 stuck' }
  )
  t.match(res.json(), { status: 'stuck', circuit: 'closed', worker_running: true })
  t.equal((await app.inject({ url: '/health/ready' })).statusCode, 200, 'readiness is about the database, not the worker')
})

t.test('with the worker disabled in this process there is nothing to be stuck', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), WORKER_ENABLED: 'false', STUCK_AFTER_SECONDS: '1' })
  await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
  await new Promise((r) => setTimeout(r, 1_200))
  t.equal((await app.inject({ url: '/health' })).statusCode, 200)
})

t.test('readiness ?deep=true also asks the model', async (t) => {
  const fake = await startFakeModelServer()
  const app = await buildTestApp(t, {
    ...(await backendEnv(t, 'pglite')),
    WORKER_ENABLED: 'false',
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1'
  })
  const ok = await app.inject({ url: '/health/ready?deep=true' })
  t.equal(ok.statusCode, 200)
  t.match(ok.json(), { checks: { database: { ok: true }, model: { ok: true } } })
  await fake.close()
  const down = await app.inject({ url: '/health/ready?deep=true' })
  t.equal(down.statusCode, 503)
  t.match(down.json(), { status: 'not_ready', checks: { database: { ok: true }, model: { ok: false, error: String } } })
})
