// The model path end to end: ingest → queue → the real worker → the OpenAI-compatible client
// → the fake model server over real HTTP → insights, usage, metrics and /health, on both
// back ends. Each test sets the fake misbehaving the way a real provider does and proves
// what the pipeline does about it: nothing acknowledged is lost, nothing analysed twice.
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { type FakeModelServer, type FakeModelServerOptions, startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import type { AppDeps } from '../../src/app.ts'
import { type Database, openDatabase } from '../../src/db/client.ts'
import { CONVERSATION_STATUSES_SQL } from '../../src/db/conversations.ts'
import { type BackendName, backendEnv, backends, buildTestApp, conversation, testConfig, truncate, waitFor } from '../helper.ts'

const API_KEY = 'sk-test-secret-123'
type TestApp = Awaited<ReturnType<typeof buildTestApp>>
type T = Parameters<typeof buildTestApp>[0]

/**
 * Creating and migrating a PGlite takes seconds, which a dozen tests here would pay each
 * (a fresh PostgreSQL database is cheap): the PGlite tests share one, emptied before each test.
 */
async function sharedPglite(t: T): Promise<Database> {
  const database = await openDatabase(testConfig({ DATA_DIR: 'memory://' }), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  return database
}

/** The fake on a port of its own and an app pointed at it; both closed after the test. */
async function setup(
  t: T,
  backend: BackendName,
  opts: { fake?: FakeModelServerOptions; env?: Record<string, string>; deps?: AppDeps; shared?: Database } = {}
): Promise<{ app: TestApp; fake: FakeModelServer }> {
  const fake = await startFakeModelServer(opts.fake)
  t.teardown(() => fake.close())
  if (opts.shared) {
    // the previous test's app has closed (its worker released everything); start empty
    await truncate(opts.shared, ['conversations', 'conversation_keys', 'conversation_queue', 'insights', 'model_usage', 'analysis_cache'])
  }
  const app = await buildTestApp(
    t,
    {
      ...(opts.shared ? {} : await backendEnv(t, backend)),
      MODEL_PROVIDER: 'openai-compatible',
      MODEL_BASE_URL: fake.url,
      MODEL_NAME: 'fake-1',
      MODEL_API_KEY: API_KEY,
      MODEL_RETRY_BASE_MS: '5',
      MODEL_RETRY_MAX_MS: '2000',
      MODEL_TIMEOUT_MS: '5000',
      MODEL_MAX_RETRIES: '2',
      BREAKER_FAILURE_THRESHOLD: '5',
      BREAKER_COOLDOWN_MS: '1000',
      MAX_ATTEMPTS: '5',
      MODEL_PRICES: 'fake-1=1/2',
      ...opts.env
    },
    { ...opts.deps, ...(opts.shared ? { database: opts.shared } : {}) }
  )
  return { app, fake }
}

/** Batch ingest (1000 per request, the contract's default cap); returns the ids in order. */
async function ingest(app: TestApp, items: object[]): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < items.length; i += 1000) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/conversations/batch',
      payload: { conversations: items.slice(i, i + 1000) }
    })
    if (res.statusCode !== 207) throw new Error(`batch ingest answered ${res.statusCode}: ${res.body}`)
    const body = res.json() as { accepted: number; results: { id: string; status: string }[] }
    if (body.results.some((r) => r.status !== 'pending')) throw new Error(`batch ingest did not queue everything: ${res.body}`)
    ids.push(...body.results.map((r) => r.id))
  }
  return ids
}

const many = (n: number) => Array.from({ length: n }, () => conversation())

async function statusCounts(app: TestApp): Promise<Record<string, number>> {
  const rows = await app.database.query<{ status: string; n: number }>(
    sql.raw(`WITH s AS (${CONVERSATION_STATUSES_SQL}) SELECT status, count(*)::int AS n FROM s GROUP BY status`)
  )
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]))
}

async function insightCount(app: TestApp): Promise<number> {
  const rows = await app.database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM insights`)
  return Number(rows[0]?.n ?? 0)
}

/** Sum of a counter's or gauge's values whose labels include `labels`; 0 when none. */
async function metricValue(app: TestApp, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = app.metrics.registry.getSingleMetric(name)
  if (!m) throw new Error(`no metric ${name}`)
  const { values } = await m.get()
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((sum, v) => sum + v.value, 0)
}

async function health(app: TestApp) {
  const res = await app.inject({ url: '/health' })
  return { statusCode: res.statusCode, ...res.json() }
}

/** Every analysed row, or undefined while some are not: a waitFor predicate. */
async function allAnalyzed(app: TestApp, n: number) {
  const c = await statusCounts(app)
  return c.analyzed === n && (await insightCount(app)) === n && c
}

/** A pino logger whose lines are kept in memory, for assertions on what was logged. */
function captureLogger(level = 'debug') {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    }
  })
  return { logger: pino({ level }, stream), lines }
}

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const shared = backend === 'pglite' ? await sharedPglite(t) : undefined
    t.test('conversations are analysed by the model with tokens and cost on insights, usage and metrics', async (t) => {
      const { app, fake } = await setup(t, backend, { shared })
      const ids = await ingest(app, many(12))
      await waitFor(() => allAnalyzed(app, 12), { what: 'all 12 analysed' })

      const convs = await Promise.all(ids.map(async (id) => (await app.inject({ url: `/api/v1/conversations/${id}` })).json()))
      const insights = convs.map((c) => c.insight)
      t.ok(convs.every((c) => c.status === 'analyzed'), 'every conversation analysed')
      t.ok(insights.every((i) => i.model === 'fake-1' && i.cached === false), 'every insight by fake-1, none from the cache')
      t.ok(insights.every((i) => i.tokens.input > 0 && i.tokens.output > 0), 'tokens on every insight')
      t.ok(insights.every((i) => i.cost_usd > 0), 'cost on every insight')
      const insightInput = insights.reduce((n, i) => n + i.tokens.input, 0)
      const insightOutput = insights.reduce((n, i) => n + i.tokens.output, 0)
      const insightCost = insights.reduce((n, i) => n + i.cost_usd, 0)
      t.ok(fake.stats.lastAuthorization, 'the key is sent to the model')

      const today = new Date().toISOString().slice(0, 10)
      const usage = (await app.inject({ url: `/api/v1/usage?since=${today}&until=${today}` })).json()
      t.equal(usage.days.length, 1)
      t.match(usage.days[0], { day: today, model: 'fake-1' })
      t.equal(usage.days[0].calls, fake.stats.calls, 'every model call is counted')
      t.equal(usage.days[0].input_tokens, insightInput, 'the usage input tokens are the insights\' split exactly')
      t.equal(usage.days[0].output_tokens, insightOutput)
      t.ok(Math.abs(usage.days[0].cost_usd - insightCost) < 1e-5, 'the usage cost is the insights\' cost')
      t.ok(usage.totals.cost_usd > 0)
      t.equal(usage.budget.daily_limit_usd, null)
      t.equal(usage.budget.exhausted, false)

      t.equal(await metricValue(app, 'gleaner_model_tokens_total', { model: 'fake-1', type: 'input' }), insightInput)
      t.equal(await metricValue(app, 'gleaner_model_tokens_total', { model: 'fake-1', type: 'output' }), insightOutput)
      t.ok((await metricValue(app, 'gleaner_model_cost_usd_total', { model: 'fake-1' })) > 0)
      t.equal(await metricValue(app, 'gleaner_model_calls_total', { model: 'fake-1', outcome: 'ok' }), fake.stats.calls)
      t.equal(await metricValue(app, 'gleaner_insights_stored_total', { model: 'fake-1', cached: 'false' }), 12)
      const text = (await app.inject({ url: '/metrics' })).body
      t.match(text, /^gleaner_model_calls_total\{model="fake-1",outcome="ok"\} \d+$/m)
      t.match(text, /^gleaner_model_tokens_total\{model="fake-1",type="input"\} \d+$/m)
      t.match(text, /^gleaner_model_cost_usd_total\{model="fake-1"\} [\d.e-]+$/m)
    })

    t.test('a failing model opens the circuit, pauses without burning calls or attempts, and a probe closes it', async (t) => {
      const { logger, lines } = captureLogger('warn')
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: { errorRate: 1 },
        env: {
          BREAKER_FAILURE_THRESHOLD: '3',
          BREAKER_COOLDOWN_MS: '2000',
          MODEL_MAX_RETRIES: '1',
          WORKER_CONCURRENCY: '1',
          BATCH_INITIAL: '8'
        },
        deps: { logger }
      })
      await ingest(app, many(20))

      const h = await waitFor(
        async () => {
          const b = await health(app)
          return b.circuit === 'open' && b.paused_reason === 'circuit_open' && b
        },
        { what: 'the circuit open and the worker paused' }
      )
      t.equal(h.statusCode, 200, 'an open circuit is degraded, not dead')
      t.equal(h.status, 'degraded')
      t.equal(await metricValue(app, 'gleaner_circuit_state'), 2)
      t.equal(await metricValue(app, 'gleaner_worker_paused', { reason: 'circuit_open' }), 1)
      await waitFor(async () => !(await statusCounts(app)).processing, { what: 'claims handed back' })
      // one batch at a time: exactly the threshold of failed batches, each with its retries, then nothing
      t.equal(fake.stats.calls, 3 * 2, 'three failed batches of two calls each opened the circuit')
      const callsWhenOpen = fake.stats.calls

      // Silence can only be observed over a window; the window counts because the circuit is
      // still open at its end (asserted below), well inside the 2 s cooldown.
      await sleep(300)
      t.equal(app.pipeline.breaker.state, 'open')
      t.equal(fake.stats.calls, callsWhenOpen, 'no model call while the circuit is open')
      const counts = await statusCounts(app)
      t.same(counts, { pending: 20 }, 'every conversation waits, none failed')
      const used = await app.database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM conversation_queue WHERE attempts > 0`)
      t.equal(Number(used[0]?.n), 0, 'an outage uses no attempt')
      const usage = (await app.inject({ url: '/api/v1/usage' })).json()
      t.equal(usage.totals.calls, callsWhenOpen, 'the failed calls are in the usage report')

      fake.setBehaviour({ errorRate: 0 })
      await waitFor(() => allAnalyzed(app, 20), { what: 'all analysed after the probe' })
      const after = await health(app)
      t.match(after, { status: 'ok', circuit: 'closed', paused_reason: null })
      t.equal(await metricValue(app, 'gleaner_circuit_state'), 0)
      t.equal(await metricValue(app, 'gleaner_worker_paused', { reason: 'circuit_open' }), 0)
      const states = lines
        .map((l) => JSON.parse(l) as { msg: string; circuit?: string })
        .filter((l) => l.msg === 'model circuit changed state')
        .map((l) => l.circuit)
      t.same(states, ['open', 'half_open', 'closed'], 'one half-open probe closed the circuit')
    })

    t.test('a poison conversation becomes a dead letter after MAX_ATTEMPTS while the others are analysed, and can be retried', async (t) => {
      const marker = 'POISON-7f3a'
      const { app, fake } = await setup(t, backend, { shared, fake: { poisonMarker: marker }, env: { MAX_ATTEMPTS: '3' } })
      const poison = conversation({
        messages: [{ role: 'user', content: `My parcel never arrived and tracking is broken ${marker}` }]
      })
      const [poisonId, ...others] = await ingest(app, [poison, ...many(9)])

      await waitFor(async () => (await app.repos.conversations.getById(poisonId!))?.status === 'failed', {
        what: 'the poison conversation failed'
      })
      await waitFor(async () => (await app.repos.insights.getMany(others)).length === 9, { what: 'the others analysed' })
      const row = await app.repos.conversations.getById(poisonId!)
      t.equal(row?.attempts, 3, 'it used exactly MAX_ATTEMPTS')
      t.match(row?.lastError, /no valid insight/)
      t.equal(await app.repos.insights.getByConversation(poisonId!), null)
      t.same(await statusCounts(app), { analyzed: 9, failed: 1 })
      t.equal(await metricValue(app, 'gleaner_analysis_failures_total', { reason: 'dead_letter' }), 1)

      const dead = (await app.inject({ url: '/api/v1/dead-letters' })).json()
      t.equal(dead.items.length, 1)
      t.match(dead.items[0], { id: poisonId, source: 'web-chat', external_id: poison.external_id, attempts: 3, last_error: /no valid insight/ })
      t.equal(dead.next_cursor, null)

      // the provider is fixed; the operator puts the dead letter back
      fake.setBehaviour({ poisonMarker: null })
      const retry = await app.inject({ method: 'POST', url: `/api/v1/dead-letters/${poisonId}/retry` })
      t.equal(retry.statusCode, 202)
      t.same(retry.json(), { id: poisonId, status: 'pending' })
      await waitFor(() => allAnalyzed(app, 10), { what: 'the retried conversation analysed' })
      const again = await app.repos.conversations.getById(poisonId!)
      t.equal(again?.attempts, 1, 'the retry started with fresh attempts')
      t.equal((await app.inject({ url: '/api/v1/dead-letters' })).json().items.length, 0)
    })

    t.test('a spent daily budget pauses the worker after the first batch and loses nothing', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        env: { DAILY_BUDGET_USD: '0.000001', WORKER_CONCURRENCY: '1', BATCH_INITIAL: '5' }
      })
      await ingest(app, many(20))
      const h = await waitFor(
        async () => {
          const b = await health(app)
          return b.paused_reason === 'budget_exhausted' && b
        },
        { what: 'the worker paused on the budget' }
      )
      t.equal(h.statusCode, 200)
      t.equal(h.status, 'degraded')
      t.equal(h.circuit, 'closed')
      t.equal(h.budget.remaining_usd, 0)
      t.equal(await metricValue(app, 'gleaner_worker_paused', { reason: 'budget_exhausted' }), 1)
      t.equal(fake.stats.calls, 1, 'one batch, one call, then the gate closed')
      t.same(await statusCounts(app), { analyzed: 5, pending: 15 }, 'the rest waits, nothing lost or failed')

      const usage = (await app.inject({ url: '/api/v1/usage' })).json()
      t.equal(usage.budget.exhausted, true)
      t.equal(usage.budget.daily_limit_usd, 0.000001)
      t.equal(usage.budget.remaining_today_usd, 0)
      t.ok(usage.budget.spent_today_usd > 0)
      t.equal(usage.totals.calls, 1)
    })

    t.test('slow batches shrink the batch size; a healthy model with a deep backlog grows it back', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: { latencyMs: 250 },
        env: { BATCH_MIN: '1', BATCH_MAX: '20', BATCH_INITIAL: '20', BATCH_LATENCY_TARGET_MS: '100', WORKER_CONCURRENCY: '1' }
      })
      t.equal(await metricValue(app, 'gleaner_batch_size'), 20)
      await ingest(app, many(400))
      // 20 → 10 → 5 → 2 → 1, and it stays at the floor while every batch is slow
      await waitFor(async () => (await metricValue(app, 'gleaner_batch_size')) === 1, { what: 'batch size down to 1' })
      const slowCalls = fake.stats.calls
      const slowItems = fake.stats.itemsRequested

      fake.setBehaviour({ latencyMs: 0 })
      await waitFor(async () => (await metricValue(app, 'gleaner_batch_size')) >= 5, { what: 'batch size growing back' })
      // what the model saw: batches larger than one again
      await waitFor(() => fake.stats.calls - slowCalls >= 6, { what: 'a few fast batches' })
      const itemsPerCall = (fake.stats.itemsRequested - slowItems) / (fake.stats.calls - slowCalls)
      t.ok(itemsPerCall > 1, `fast batches carry more than one conversation (${itemsPerCall.toFixed(1)} per call)`)
    })

    t.test('failed batches shrink the batch size; it grows back once the model answers', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: { errorRate: 1 },
        env: {
          BATCH_MIN: '1',
          BATCH_MAX: '20',
          BATCH_INITIAL: '16',
          MODEL_MAX_RETRIES: '0',
          WORKER_CONCURRENCY: '1',
          // the breaker is not under test here: it stays closed while the batches fail
          BREAKER_FAILURE_THRESHOLD: '1000'
        }
      })
      await ingest(app, many(300))
      // 16 → 8 → 4 → 2 → 1, and it stays at the floor while every batch fails
      await waitFor(async () => (await metricValue(app, 'gleaner_batch_size')) === 1, { what: 'batch size down to 1' })
      t.equal(app.pipeline.breaker.state, 'closed')
      t.notOk((await statusCounts(app)).failed, 'an outage fails no conversation')

      fake.setBehaviour({ errorRate: 0 })
      await waitFor(async () => (await metricValue(app, 'gleaner_batch_size')) >= 5, { what: 'batch size growing back' })
      t.pass('the batch size grew back with the model healthy and the backlog deep')
    })

    t.test('429 with Retry-After through the worker: the batch waits, uses no attempt and ends analysed', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        // one more 429 than the client retries: the batch itself fails rate limited once
        fake: { rateLimitNext: 2, retryAfterSeconds: 1 },
        env: { MODEL_MAX_RETRIES: '1', WORKER_CONCURRENCY: '1', BATCH_INITIAL: '5' }
      })
      const ids = await ingest(app, many(5))
      await waitFor(() => allAnalyzed(app, 5), { what: 'all analysed after the rate limit' })
      t.equal(fake.stats.byStatus[429], 2)
      t.equal(await metricValue(app, 'gleaner_model_calls_total', { model: 'fake-1', outcome: 'rate_limited' }), 2)
      t.equal(await metricValue(app, 'gleaner_analysis_failures_total', { reason: 'rate_limited' }), 1)
      for (const id of ids) {
        t.equal((await app.repos.conversations.getById(id))?.attempts, 1, 'a rate limit is not the conversation\'s fault')
      }
    })

    t.test('a hung model times out, nothing is lost, and everything is analysed once it recovers', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: { hang: true },
        env: {
          MODEL_TIMEOUT_MS: '200',
          MODEL_MAX_RETRIES: '0',
          BREAKER_FAILURE_THRESHOLD: '1',
          BREAKER_COOLDOWN_MS: '100',
          WORKER_CONCURRENCY: '1',
          BATCH_INITIAL: '5'
        }
      })
      const ids = await ingest(app, many(10))
      // the first batch and then a half-open probe both time out
      await waitFor(async () => (await metricValue(app, 'gleaner_model_calls_total', { model: 'fake-1', outcome: 'timeout' })) >= 2, {
        what: 'timed-out calls'
      })
      t.ok(fake.stats.aborted >= 1, 'the client abandoned the hung calls')
      const during = await statusCounts(app)
      t.notOk(during.failed, 'a hang fails no conversation')
      t.notOk(during.analyzed, 'and analyses none')
      t.equal((during.pending ?? 0) + (during.processing ?? 0), 10)

      fake.setBehaviour({ hang: false })
      await waitFor(() => allAnalyzed(app, 10), { what: 'all analysed after the hang' })
      t.ok((await metricValue(app, 'gleaner_analysis_failures_total', { reason: 'timeout' })) >= 2)
      for (const id of ids) {
        t.equal((await app.repos.conversations.getById(id))?.attempts, 1, 'timeouts used no attempt')
      }
    })

    t.test('a half-open probe served entirely from the cache does not leave the circuit half-open for ever', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        env: {
          BREAKER_FAILURE_THRESHOLD: '1',
          BREAKER_COOLDOWN_MS: '100',
          MODEL_MAX_RETRIES: '0',
          WORKER_CONCURRENCY: '1',
          // rows given back after an outage wait this long: the probe then finds only the cached one
          RETRY_BASE_MS: '2000'
        }
      })
      const messages = [{ role: 'user', content: 'The app crashes every time I open the settings page on Android.' }]
      const [first] = await ingest(app, [conversation({ messages })])
      await waitFor(async () => (await app.repos.conversations.getById(first!))?.status === 'analyzed', { what: 'the first analysed' })

      fake.setBehaviour({ errorRate: 1 })
      const [unlucky] = await ingest(app, many(1))
      await waitFor(() => app.pipeline.breaker.state === 'open', { what: 'the circuit open' })
      // same text as the first: the next batch (the probe) needs no model call at all
      const [twin] = await ingest(app, [conversation({ messages })])
      await waitFor(async () => (await app.repos.conversations.getById(twin!))?.status === 'analyzed', { what: 'the twin served from the cache' })
      t.equal((await app.repos.insights.getByConversation(twin!))?.cached, true)

      fake.setBehaviour({ errorRate: 0 })
      await waitFor(async () => (await app.repos.conversations.getById(unlucky!))?.status === 'analyzed', {
        what: 'the row of the outage analysed'
      })
      t.equal(app.pipeline.breaker.state, 'closed')
      t.match(await health(app), { status: 'ok', circuit: 'closed' })
    })

    t.test('tokens of answers that could not be used still count against the budget', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: { malformed: 'garbage' },
        env: {
          DAILY_BUDGET_USD: '0.000001',
          WORKER_CONCURRENCY: '1',
          BATCH_INITIAL: '4',
          // the budget, not the breaker, must be what stops the spending here
          BREAKER_FAILURE_THRESHOLD: '1000'
        }
      })
      await ingest(app, many(8))
      await waitFor(async () => (await health(app)).paused_reason === 'budget_exhausted', {
        what: 'the worker paused on the budget'
      })
      const callsWhenPaused = fake.stats.calls
      const usage = (await app.inject({ url: '/api/v1/usage' })).json()
      t.equal(usage.budget.exhausted, true)
      t.equal(usage.totals.calls, callsWhenPaused, 'every call of the failed batch is in the usage report')
      const metricCost = await metricValue(app, 'gleaner_model_cost_usd_total', { model: 'fake-1' })
      t.ok(Math.abs(usage.totals.cost_usd - metricCost) < 1e-6, 'the usage cost is what the metrics counted')
      t.notOk((await statusCounts(app)).failed, 'nothing failed for it')
    })

    t.test('what a batch spent is booked even when its store statement fails', async (t) => {
      // the store statement carries the usage booking; when it fails, the worker books it apart
      const { app, fake } = await setup(t, backend, { env: { WORKER_CONCURRENCY: '1', BATCH_INITIAL: '2', BREAKER_FAILURE_THRESHOLD: '1000' } })
      await app.database.query(sql`ALTER TABLE insights ADD CONSTRAINT gleaner_test_refuse CHECK (false)`)
      await ingest(app, many(2))
      await waitFor(async () => (await metricValue(app, 'gleaner_analysis_failures_total')) >= 1, {
        what: 'a store that failed'
      })
      t.ok(fake.stats.calls >= 1, 'the model was called')
      await waitFor(async () => ((await app.inject({ url: '/api/v1/usage' })).json().totals.calls as number) >= 1, {
        what: 'the failed batch’s call in the usage report'
      })
      await app.database.query(sql`ALTER TABLE insights DROP CONSTRAINT gleaner_test_refuse`)
    })

    t.test('the model API key never appears in the logs, across failures and retries', async (t) => {
      const { logger, lines } = captureLogger('debug')
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: {
          requireApiKey: API_KEY,
          failNext: 2,
          rateLimitNext: 1,
          retryAfterSeconds: 0,
          badRequestNext: 1,
          malformed: 'garbage',
          malformedNext: 1
        },
        env: { MODEL_MAX_RETRIES: '2', WORKER_CONCURRENCY: '1', BATCH_INITIAL: '4' },
        deps: { logger }
      })
      await ingest(app, many(8))
      await waitFor(() => allAnalyzed(app, 8), { what: 'all analysed despite the failures' })
      // a key the provider refuses: its error path logs too
      fake.setBehaviour({ requireApiKey: 'sk-another-key-0000' })
      const [refusedId] = await ingest(app, many(1))
      await waitFor(async () => (await app.repos.conversations.getById(refusedId!))?.lastError, { what: 'the refusal recorded' })

      const log = lines.join('')
      t.match(log, /model call failed/, 'the 5xx and 429 were logged')
      t.match(log, /model call rejected/, 'the 400 and 401 were logged')
      t.match(log, /model answer unparseable/, 'the garbage answer was logged')
      t.notOk(log.includes(API_KEY), 'the key is not in any log line')
      t.notOk(log.includes('secret-123'), 'nor any part of it')
    })

    t.test('2,000 conversations through a model failing 20 % of calls are all analysed exactly once', async (t) => {
      const { app, fake } = await setup(t, backend, {
        shared,
        fake: { errorRate: 0.2, seed: 42 },
        env: {
          BATCH_MAX: '100',
          BATCH_INITIAL: '100',
          WORKER_CONCURRENCY: '4',
          MODEL_MAX_RETRIES: '3',
          MODEL_RETRY_BASE_MS: '1',
          MODEL_MAX_CONNECTIONS: '8',
          // the breaker is tested above; here one unlucky streak must not stall the run
          BREAKER_FAILURE_THRESHOLD: '20',
          BREAKER_COOLDOWN_MS: '100'
        }
      })
      const ids = await ingest(app, many(2000))
      t.equal(new Set(ids).size, 2000)
      await waitFor(async () => (await statusCounts(app)).analyzed === 2000, { what: 'all 2000 analysed', intervalMs: 200 })

      t.same(await statusCounts(app), { analyzed: 2000 }, 'nothing left pending, processing or failed')
      t.equal(await insightCount(app), 2000, 'one insight per conversation')
      const orphans = await app.database.query<{ n: number }>(sql`
        SELECT count(*)::int AS n FROM conversations c LEFT JOIN insights i ON i.conversation_id = c.id
        WHERE i.conversation_id IS NULL`)
      t.equal(Number(orphans[0]?.n), 0, 'every conversation has its insight')
      t.equal(
        await metricValue(app, 'gleaner_insights_stored_total', { model: 'fake-1' }),
        2000,
        'each insight stored exactly once'
      )
      t.ok(fake.stats.itemsAnalysed >= 2000, `the model analysed every conversation (${fake.stats.itemsAnalysed})`)
      t.ok((fake.stats.byStatus[500] ?? 0) > 0, 'the model did fail along the way')
      t.notOk((await statusCounts(app)).failed, 'and no conversation paid for it')
    })
  })
}
