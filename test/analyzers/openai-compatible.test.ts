import { Writable } from 'node:stream'
import { pino } from 'pino'
import t from 'tap'
import { type FakeModelServer, type FakeModelServerOptions, startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import { type AnalysisInput, ModelCallError } from '../../src/analyzers/analyzer.ts'
import { parseRetryAfter, type TransportClock } from '../../src/analyzers/model-transport.ts'
import { splitProportionally } from '../../src/analyzers/model-usage.ts'
import { createOpenAICompatibleAnalyzer } from '../../src/analyzers/openai-compatible.ts'
import { findConversationBlocks } from '../../src/analyzers/prompts.ts'
import { loadConfig } from '../../src/config.ts'
import { createMetrics } from '../../src/metrics.ts'

const API_KEY = 'sk-secret-test'
type WithTeardown = { teardown(fn: () => unknown): void }

const conv = (id: string, text: string): AnalysisInput => ({
  id,
  source: 'test',
  messages: [
    { role: 'user', content: text },
    { role: 'assistant', content: 'Let me look into it.' }
  ]
})
const BATCH = [
  conv('a', 'Thanks, the new release works great!'),
  conv('b', 'My invoice is wrong and I want a refund, this is urgent'),
  conv('c', 'What are your opening hours?')
]
const manyConversations = (n: number) => Array.from({ length: n }, (_, i) => conv(`c${i}`, `Question number ${i}: how do I reset my password?`))

function captureLogger() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    }
  })
  return { logger: pino({ level: 'trace' }, stream), lines }
}

/**
 * The client's clock for tests: back-offs are recorded and return at once (still refusing
 * to wait once aborted), and the jitter is the middle of its range.
 */
function testClock() {
  const slept: number[] = []
  const clock: TransportClock = {
    async sleep(ms, signal) {
      signal.throwIfAborted()
      slept.push(ms)
    },
    random: () => 0.5
  }
  return { clock, slept }
}

/** Resolves once the fake has seen `n` calls abandoned by the client. */
function aborted(fake: FakeModelServer, n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      if (fake.stats.aborted < n) return
      fake.events.off('abort', check)
      resolve()
    }
    fake.events.on('abort', check)
    check()
  })
}

async function setup(t: WithTeardown, fakeOpts: FakeModelServerOptions = {}, env: Record<string, string> = {}) {
  const fake = await startFakeModelServer(fakeOpts)
  t.teardown(() => fake.close())
  const config = loadConfig({
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    MODEL_API_KEY: API_KEY,
    MODEL_RETRY_BASE_MS: '10',
    MODEL_RETRY_MAX_MS: '2000',
    MODEL_TIMEOUT_MS: '2000',
    MODEL_MAX_RETRIES: '3',
    MODEL_PRICE_INPUT_PER_MTOK: '3',
    MODEL_PRICE_OUTPUT_PER_MTOK: '15',
    ...env
  })
  const metrics = createMetrics({ defaultMetrics: false })
  const { logger, lines } = captureLogger()
  const { clock, slept } = testClock()
  const analyzer = createOpenAICompatibleAnalyzer(config, { metrics, logger, clock })
  t.teardown(() => analyzer.close())
  const calls = async () => {
    const out: Record<string, number> = {}
    for (const v of (await metrics.modelCalls.get()).values) out[String(v.labels.outcome)] = v.value
    return out
  }
  const tokens = async () => {
    const out: Record<string, number> = {}
    for (const v of (await metrics.modelTokens.get()).values) out[String(v.labels.type)] = v.value
    return out
  }
  return { fake, config, metrics, analyzer, lines, calls, tokens, slept }
}

t.test('a clean batch: one call, insights by id, usage and cost per item that sum to the batch', async (t) => {
  const { fake, analyzer, metrics, calls, tokens } = await setup(t)
  const r = await analyzer.analyzeBatch(BATCH)
  t.equal(fake.stats.calls, 1)
  t.equal(r.usage.calls, 1)
  const byId = new Map(r.results.map((x) => [x.id, x]))
  t.same([...byId.keys()].sort(), ['a', 'b', 'c'])
  const a = byId.get('a')!
  const b = byId.get('b')!
  t.ok(a.ok && b.ok && byId.get('c')!.ok)
  if (!a.ok || !b.ok) return
  t.equal(a.insight.sentiment, 'positive', 'answers are matched to their conversation by index')
  t.equal(b.insight.sentiment, 'negative')
  t.equal(b.insight.urgency, 'high')

  // The fake bills ceil(chars/4); the sums of the item shares must be exact.
  t.ok(r.usage.input > 0 && r.usage.output > 0)
  const ok = r.results.filter((x) => x.ok)
  t.equal(
    ok.reduce((n, x) => n + x.tokens.input, 0),
    r.usage.input
  )
  t.equal(
    ok.reduce((n, x) => n + x.tokens.output, 0),
    r.usage.output
  )
  t.equal(r.usage.cost_usd, (r.usage.input * 3 + r.usage.output * 15) / 1e6)
  t.ok(Math.abs(ok.reduce((n, x) => n + x.cost_usd, 0) - r.usage.cost_usd) < 1e-12)
  t.ok(b.tokens.input > a.tokens.input, 'a longer conversation carries more of the prompt')

  const sent = fake.stats.lastRequest!
  t.equal(sent.model, 'fake-1')
  t.equal(sent.temperature, 0)
  t.same(sent.response_format, { type: 'json_object' })
  t.equal(fake.stats.lastAuthorization, true)

  t.same(await calls(), { ok: 1 })
  t.same(await tokens(), { input: r.usage.input, output: r.usage.output })
  t.equal((await metrics.modelCost.get()).values[0]?.value, r.usage.cost_usd)
  t.equal((await metrics.modelDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value, 1)
  t.equal(analyzer.model, 'fake-1')
  t.equal(analyzer.promptVersion, 'v2')
  t.equal(analyzer.billable, true)
})

t.test('per-model price from MODEL_PRICES overrides the default prices', async (t) => {
  const { analyzer } = await setup(t, {}, { MODEL_PRICES: 'other=1/1,fake-1=2/4' })
  const r = await analyzer.analyzeBatch(BATCH)
  t.equal(r.usage.cost_usd, (r.usage.input * 2 + r.usage.output * 4) / 1e6)
})

t.test('no response_format when MODEL_JSON_MODE is off, no Authorization without a key', async (t) => {
  const { fake, analyzer } = await setup(t, {}, { MODEL_JSON_MODE: 'false', MODEL_API_KEY: '' })
  await analyzer.analyzeBatch(BATCH)
  t.equal(fake.stats.lastRequest?.response_format, undefined)
  t.equal(fake.stats.lastAuthorization, false)
})

t.test('an empty batch makes no call', async (t) => {
  const { fake, analyzer } = await setup(t)
  const r = await analyzer.analyzeBatch([])
  t.same(r, { results: [], usage: { input: 0, output: 0, cost_usd: 0, calls: 0 } })
  t.equal(fake.stats.calls, 0)
})

t.test('malformed answers are repaired without another call', async (t) => {
  const { fake, analyzer } = await setup(t)
  for (const malformed of ['fences', 'trailing-comma', 'prose', 'citations'] as const) {
    fake.reset()
    fake.setBehaviour({ malformed })
    const r = await analyzer.analyzeBatch(BATCH)
    t.ok(
      r.results.every((x) => x.ok),
      `${malformed}: all items ok`
    )
    t.equal(fake.stats.calls, 1, `${malformed}: one call`)
  }
})

t.test('a partial answer: the missing items are asked alone and all end ok', async (t) => {
  const { fake, analyzer } = await setup(t, { partial: 2 })
  const items = manyConversations(5)
  const r = await analyzer.analyzeBatch(items)
  t.ok(r.results.every((x) => x.ok))
  t.equal(fake.stats.calls, 3, 'one batch call, then one call for each of the 2 missing items')
  t.equal(r.usage.calls, 3)
  const ok = r.results.filter((x) => x.ok)
  t.equal(
    ok.reduce((n, x) => n + x.tokens.input, 0),
    r.usage.input,
    'the re-asks are charged to the items they were for'
  )
})

t.test('many missing items are re-asked in halves, not one by one', async (t) => {
  const { fake, analyzer } = await setup(t, { partial: 8 })
  const r = await analyzer.analyzeBatch(manyConversations(10))
  t.ok(r.results.every((x) => x.ok))
  // 10 asked, 2 answered; the 8 left go as two halves of 4, each answered for 1;
  // the 3 left of each half go alone: 1 + 2 + 6.
  t.equal(fake.stats.calls, 9)
})

t.test('500s are retried with back-off, then the call succeeds', async (t) => {
  const { fake, analyzer, calls, slept } = await setup(t, { failNext: 2 })
  const r = await analyzer.analyzeBatch(BATCH)
  t.ok(r.results.every((x) => x.ok))
  t.equal(fake.stats.calls, 3)
  t.equal(r.usage.calls, 3)
  t.same(await calls(), { error: 2, ok: 1 })
  t.same(slept, [5, 10], 'full jitter over MODEL_RETRY_BASE_MS doubling per retry (at the middle of its range)')
})

t.test('persistent 500s end in ModelCallError error after MODEL_MAX_RETRIES + 1 calls', async (t) => {
  const { fake, analyzer, calls } = await setup(t, { errorRate: 1 }, { MODEL_MAX_RETRIES: '2' })
  const err = await analyzer.analyzeBatch(BATCH).catch((e: unknown) => e)
  t.type(err, ModelCallError)
  t.equal((err as ModelCallError).kind, 'error')
  t.equal(fake.stats.calls, 3)
  t.same(await calls(), { error: 3 })
})

t.test('a hung call times out and ends in ModelCallError timeout', async (t) => {
  const { fake, analyzer, calls } = await setup(t, { hang: true }, { MODEL_TIMEOUT_MS: '200', MODEL_MAX_RETRIES: '1' })
  const err = await analyzer.analyzeBatch(BATCH).catch((e: unknown) => e)
  t.type(err, ModelCallError)
  t.equal((err as ModelCallError).kind, 'timeout')
  t.match((err as ModelCallError).message, /no answer within 200 ms; gave up after 2 attempts/)
  t.equal(fake.stats.calls, 2)
  t.same(await calls(), { timeout: 2 })
  await aborted(fake, 2)
  t.pass('the client dropped both hung requests')
})

t.test('429 with Retry-After: the retry waits that long, not a jittered back-off', async (t) => {
  const { fake, analyzer, calls, slept } = await setup(t, { rateLimitNext: 1, retryAfterSeconds: 1 })
  const r = await analyzer.analyzeBatch(BATCH)
  t.ok(r.results.every((x) => x.ok))
  t.equal(fake.stats.calls, 2)
  t.same(slept, [1_000], 'one wait, of the Retry-After')
  t.same(await calls(), { rate_limited: 1, ok: 1 })
})

t.test('a Retry-After longer than MODEL_RETRY_MAX_MS is capped', async (t) => {
  const { analyzer, slept } = await setup(t, { rateLimitNext: 1, retryAfterSeconds: 60 }, { MODEL_RETRY_MAX_MS: '2000' })
  await analyzer.analyzeBatch(BATCH)
  t.same(slept, [2_000])
})

t.test('persistent 429 ends in ModelCallError rate_limited carrying the Retry-After', async (t) => {
  const { analyzer } = await setup(t, { rateLimitNext: 10, retryAfterSeconds: 0 }, { MODEL_MAX_RETRIES: '1' })
  const err = (await analyzer.analyzeBatch(BATCH).catch((e: unknown) => e)) as ModelCallError
  t.equal(err.kind, 'rate_limited')
  t.equal(err.retryAfterMs, 0)
})

t.test('400 is not retried and ends in ModelCallError rejected', async (t) => {
  const { fake, analyzer } = await setup(t, { badRequestNext: 5 })
  const err = (await analyzer.analyzeBatch(BATCH).catch((e: unknown) => e)) as ModelCallError
  t.type(err, ModelCallError)
  t.equal(err.kind, 'rejected')
  t.match(err.message, /400/)
  t.equal(fake.stats.calls, 1)
})

t.test('a poisoned conversation fails alone, retryable, while the rest are ok', async (t) => {
  const { fake, analyzer } = await setup(t, { poisonMarker: 'POISON' })
  const items = [...BATCH, conv('p', 'this one is POISON for the model')]
  const r = await analyzer.analyzeBatch(items)
  const p = r.results.find((x) => x.id === 'p')!
  t.equal(p.ok, false)
  t.match(p, { ok: false, retryable: true, error: /no valid insight/ })
  t.ok(r.results.filter((x) => x.id !== 'p').every((x) => x.ok))
  t.equal(fake.stats.calls, 2, 'the batch, then the poisoned item alone')

  fake.reset()
  fake.setBehaviour({ poisonMarker: 'POISON', poisonAs: 'invalid' })
  const again = await analyzer.analyzeBatch(items)
  t.match(again.results.find((x) => x.id === 'p'), { ok: false, retryable: true })
  t.equal(again.results.filter((x) => x.ok).length, 3, 'an invalid item fails alone too')
  t.equal(fake.stats.calls, 2)
})

t.test('garbage answers are retried, then split, then the batch fails as error', async (t) => {
  const { fake, analyzer, calls } = await setup(t, { malformed: 'garbage' }, { MODEL_MAX_RETRIES: '1' })
  const err = (await analyzer.analyzeBatch(BATCH).catch((e: unknown) => e)) as ModelCallError
  t.type(err, ModelCallError)
  t.equal(err.kind, 'error')
  t.match(err.message, /could not be parsed/)
  t.equal(fake.stats.calls, 2 + 3, 'two attempts at the batch, then each item alone once')
  t.same(await calls(), { error: 5 }, 'an unparseable 200 counts as a failed call')
})

t.test('a garbage answer followed by a good one is a retry, not a split', async (t) => {
  const { fake, analyzer } = await setup(t, { malformed: 'garbage', malformedNext: 1 })
  const r = await analyzer.analyzeBatch(BATCH)
  t.ok(r.results.every((x) => x.ok))
  t.equal(fake.stats.calls, 2)
})

t.test('missing usage: tokens are estimated from the text', async (t) => {
  const { analyzer, tokens } = await setup(t, { omitUsage: true })
  const r = await analyzer.analyzeBatch(BATCH)
  t.ok(r.usage.input > 0 && r.usage.output > 0)
  for (const x of r.results) {
    t.ok(x.ok && x.tokens.input > 0 && x.tokens.output > 0 && x.cost_usd > 0, `${x.id} has estimated tokens`)
  }
  const counted = await tokens()
  t.ok(counted.input! > 0 && counted.output! > 0)
})

t.test('long conversations are trimmed in the prompt, keeping start and end', async (t) => {
  const { fake, analyzer } = await setup(t, {}, { MODEL_MAX_INPUT_TOKENS_PER_CONVERSATION: '100' })
  const long = conv('long', `START-MARK ${'filler words '.repeat(2_000)} END-MARK`)
  const r = await analyzer.analyzeBatch([long, BATCH[0]!])
  t.ok(r.results.every((x) => x.ok))
  const messages = fake.stats.lastRequest!.messages as Array<{ role: string; content: string }>
  const blocks = findConversationBlocks(messages.find((m) => m.role === 'user')!.content)
  t.equal(blocks.length, 2)
  t.ok(blocks[0]!.text.length <= 100 * 4, `trimmed to ${blocks[0]!.text.length} chars`)
  t.match(blocks[0]!.text, /^\[user\] START-MARK/)
  t.match(blocks[0]!.text, /END-MARK/)
  t.match(blocks[0]!.text, /…/, 'the cut is marked')
})

t.test('the API key never appears in logs or error messages', async (t) => {
  const { fake, analyzer, lines } = await setup(t)
  const messages: string[] = []
  const attempt = async () => {
    try {
      await analyzer.analyzeBatch(BATCH)
    } catch (err) {
      messages.push(String((err as Error).message), String((err as Error).stack), JSON.stringify(err))
    }
  }
  fake.setBehaviour({ failNext: 2 })
  await attempt()
  fake.setBehaviour({ badRequestNext: 1 })
  await attempt()
  fake.setBehaviour({ requireApiKey: 'sk-another-key' })
  await attempt()
  fake.setBehaviour({ requireApiKey: null, malformed: 'garbage' })
  await attempt()
  t.equal(fake.stats.lastAuthorization, true, 'the key was sent')
  t.ok(messages.length >= 3 && lines.length > 3, 'there were errors and logs to look at')
  t.notOk(lines.join('\n').includes(API_KEY), 'not in logs')
  t.notOk(messages.join('\n').includes(API_KEY), 'not in error messages')
  t.notOk(lines.join('\n').includes('sk-another-key'), 'nor any key quoted back by the provider')
})

t.test('network errors are retried and reported without the key or the request', async (t) => {
  const gone = await startFakeModelServer()
  const url = gone.url
  await gone.close()
  const metrics = createMetrics({ defaultMetrics: false })
  const { logger, lines } = captureLogger()
  const config = loadConfig({
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: url,
    MODEL_NAME: 'fake-1',
    MODEL_API_KEY: API_KEY,
    MODEL_RETRY_BASE_MS: '10',
    MODEL_MAX_RETRIES: '2'
  })
  const analyzer = createOpenAICompatibleAnalyzer(config, { metrics, logger, clock: testClock().clock })
  t.teardown(() => analyzer.close())
  const err = (await analyzer.analyzeBatch(BATCH).catch((e: unknown) => e)) as ModelCallError
  t.type(err, ModelCallError)
  t.equal(err.kind, 'error')
  t.match(err.message, /network error \(ECONNREFUSED\)/)
  t.notOk(`${err.message}${err.stack}${lines.join('')}`.includes(API_KEY))
  t.equal((await metrics.modelCalls.get()).values[0]?.value, 3)
  await t.rejects(analyzer.ping(), { name: 'ModelCallError', kind: 'error' })
})

t.test('concurrent batches never hold more than MODEL_MAX_CONNECTIONS requests in flight', async (t) => {
  const { fake, analyzer } = await setup(t, { latencyMs: 80 }, { MODEL_MAX_CONNECTIONS: '2' })
  const rs = await Promise.all(Array.from({ length: 6 }, () => analyzer.analyzeBatch(BATCH)))
  t.ok(rs.every((r) => r.results.every((x) => x.ok)))
  t.equal(fake.stats.calls, 6)
  t.equal(fake.stats.maxInFlight, 2)
})

t.test('a caller abort stops the call without a ModelCallError', async (t) => {
  const { fake, analyzer } = await setup(t, { hang: true })
  const ac = new AbortController()
  // the worker shuts down while the call hangs at the provider
  fake.events.once('call', () => ac.abort(new Error('shutting down')))
  const err = await analyzer.analyzeBatch(BATCH, ac.signal).catch((e: unknown) => e)
  t.notOk(err instanceof ModelCallError)
  t.match(err, { message: 'shutting down' })
  t.equal(fake.stats.calls, 1, 'no retry after the caller gave up')
})

t.test('ping answers when the models endpoint does, and fails fast when it does not', async (t) => {
  const { fake, analyzer } = await setup(t, { requireApiKey: API_KEY })
  await analyzer.ping()
  t.equal(fake.stats.modelsCalls, 1)
  await fake.close()
  await t.rejects(analyzer.ping(), ModelCallError)
})

t.test('close() is idempotent and stops further calls', async (t) => {
  const { analyzer } = await setup(t)
  await analyzer.close()
  await analyzer.close()
  await t.rejects(analyzer.analyzeBatch(BATCH))
})

t.test('Retry-After parsing: seconds, HTTP date, retry-after-ms, junk', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.equal(parseRetryAfter({ 'retry-after': '2' }, now), 2000)
  t.equal(parseRetryAfter({ 'retry-after': '0.5' }, now), 500)
  t.equal(parseRetryAfter({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }, now), 3000)
  t.equal(parseRetryAfter({ 'retry-after': 'Wed, 31 Dec 2025 00:00:00 GMT' }, now), 0, 'a past date means now')
  t.equal(parseRetryAfter({ 'retry-after-ms': '250', 'retry-after': '9' }, now), 250)
  t.equal(parseRetryAfter({ 'retry-after': 'soon' }, now), undefined)
  t.equal(parseRetryAfter({}, now), undefined)
})

t.test('usage is split exactly, in proportion to weights', async (t) => {
  t.same(splitProportionally(10, [1, 1, 1]), [4, 3, 3])
  t.same(splitProportionally(100, [3, 1]), [75, 25])
  t.same(splitProportionally(7, [0, 0]), [4, 3])
  t.same(splitProportionally(0, [5, 5]), [0, 0])
  t.same(splitProportionally(5, []), [])
})
