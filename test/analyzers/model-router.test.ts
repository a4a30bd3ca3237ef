// The model router over real HTTP: A/B prompt variants by a stable hash of the id, and
// fallback endpoints each behind its own breaker, the local analyzer as the last resort.
import { pino } from 'pino'
import t from 'tap'
import { startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import type { AnalysisInput } from '../../src/analyzers/analyzer.ts'
import { createModelRouter, variantBucket } from '../../src/analyzers/model-router.ts'
import type { TransportClock } from '../../src/analyzers/model-transport.ts'
import { PROMPTS } from '../../src/analyzers/prompts.ts'
import { ConfigError, loadConfig } from '../../src/config.ts'
import { createMetrics } from '../../src/metrics.ts'

type WithTeardown = { teardown(fn: () => unknown): void }
const clock: TransportClock = { sleep: async (_ms, signal) => signal.throwIfAborted(), random: () => 0.5 }
const conv = (id: string): AnalysisInput => ({
  id,
  source: 'test',
  messages: [{ role: 'user', content: `I am conversation ${id} and my invoice is wrong` }]
})

async function fakes(t: WithTeardown, n: number) {
  const out = await Promise.all(Array.from({ length: n }, (_, i) => startFakeModelServer({ modelName: `fake-${i + 1}` })))
  for (const f of out) t.teardown(() => f.close())
  return out
}

function router(t: WithTeardown, env: Record<string, string>) {
  let now = 0
  const config = loadConfig({ MODEL_PROVIDER: 'openai-compatible', MODEL_NAME: 'fake-1', MODEL_MAX_RETRIES: '0', BREAKER_FAILURE_THRESHOLD: '2', BREAKER_COOLDOWN_MS: '1000', ...env })
  const metrics = createMetrics({ defaultMetrics: false })
  const analyzer = createModelRouter(config, { metrics, logger: pino({ level: 'silent' }), clock, now: () => now })
  t.teardown(() => analyzer.close())
  return { analyzer, metrics, advance: (ms: number) => (now += ms) }
}

t.test('PROMPT_VARIANTS splits conversations by a stable id hash, within a few percent of the weights', async (t) => {
  const [fake] = await fakes(t, 1)
  const systems: string[] = []
  fake!.events.on('request', (b) => systems.push(JSON.parse(b).messages[0].content))
  const { analyzer, metrics } = router(t, { MODEL_BASE_URL: fake!.url, PROMPT_VARIANTS: 'v2:90,v2-terse:10' })
  const items = Array.from({ length: 2_000 }, (_, i) => conv(`id-${i}`))
  const r = await analyzer.analyzeBatch(items)
  t.ok(r.results.every((x) => x.ok))
  const terse = r.results.filter((x) => x.ok && x.promptVersion === 'v2-terse').length
  t.ok(Math.abs(terse / items.length - 0.1) < 0.03, `v2-terse got ${terse} of ${items.length}`)
  t.ok(r.results.every((x) => x.ok && x.promptVersion === analyzer.routeOf!(x.id).promptVersion), 'each answered with the prompt its route names')
  t.ok(systems.includes(PROMPTS['v2-terse'].system) && systems.includes(PROMPTS.v2.system), 'each variant sent its own prompt')
  const again = router(t, { MODEL_BASE_URL: fake!.url, PROMPT_VARIANTS: 'v2:90,v2-terse:10' })
  t.ok(items.every((i) => again.analyzer.routeOf!(i.id).promptVersion === analyzer.routeOf!(i.id).promptVersion), 'stable across instances')
  const items_ = await metrics.variantItems.get()
  const okBy = Object.fromEntries(items_.values.filter((v) => v.labels.outcome === 'ok').map((v) => [v.labels.prompt_version, v.value]))
  t.same(okBy, { v2: items.length - terse, 'v2-terse': terse }, 'per-variant item outcomes')
  const calls = await metrics.variantCalls.get()
  t.equal(
    calls.values.reduce((n, v) => n + v.value, 0),
    fake!.stats.calls,
    'per-variant calls add up to the calls made'
  )
  t.ok((await metrics.variantTokens.get()).values.length >= 4, 'tokens per variant and type')
})

t.test('the bucket is uniform enough: 10,000 ids fall into tenths within 1.5 percent each', async (t) => {
  const tenths = new Array(10).fill(0)
  for (let i = 0; i < 10_000; i++) tenths[Math.floor(variantBucket(`c-${i}`) * 10)]++
  for (const n of tenths) t.ok(Math.abs(n - 1_000) < 150, String(n))
})

t.test('PROMPT_VARIANTS naming an unregistered prompt stops the start', async (t) => {
  t.throws(() => loadConfig({ PROMPT_VARIANTS: 'v2:50,v9:50' }), ConfigError)
  t.throws(() => loadConfig({ PROMPT_VARIANTS: 'v2' }), ConfigError)
  t.throws(() => loadConfig({ MODEL_FALLBACKS: '[{"model":"x"}]' }), /MODEL_FALLBACKS\[0\]/)
  t.throws(() => loadConfig({ MODEL_FALLBACKS: 'not json' }), /MODEL_FALLBACKS/)
})

t.test('the primary down: the fallback takes the batch, the insight names it, and the primary gets traffic back after it recovers', async (t) => {
  const [primary, fallback] = await fakes(t, 2)
  primary!.setBehaviour({ errorRate: 1 })
  const fallbacks = JSON.stringify([{ base_url: fallback!.url, model: 'fake-2', price_input: 1, price_output: 2 }])
  const { analyzer, metrics, advance } = router(t, { MODEL_BASE_URL: primary!.url, MODEL_FALLBACKS: fallbacks })
  const state = async () => Object.fromEntries((await metrics.modelEndpointState.get()).values.map((v) => [v.labels.endpoint, v.value]))

  for (let b = 0; b < 4; b++) {
    const r = await analyzer.analyzeBatch([conv(`a${b}`), conv(`b${b}`)])
    t.ok(r.results.every((x) => x.ok && x.model === 'fake-2'), `batch ${b} answered by the fallback`)
    t.ok(r.usage.cost_usd > 0, 'the fallback\'s price applies')
    t.equal(r.usage.byModel?.['fake-2']?.calls, 1, 'its spend is booked under the model that spent it')
    if (b < 2) t.equal(r.usage.byModel?.['fake-1']?.calls, 1, 'and the failed primary call under the primary')
  }
  t.equal(primary!.stats.calls, 2, 'two failures opened the primary\'s breaker; no call while open')
  t.same(analyzer.endpoints!(), [
    { name: 'primary', model: 'fake-1', state: 'open' },
    { name: 'fallback_1', model: 'fake-2', state: 'closed' }
  ])
  t.same(await state(), { primary: 2, fallback_1: 0 })

  primary!.setBehaviour({ errorRate: 0 })
  advance(1_000)
  const back = await analyzer.analyzeBatch([conv('c1')])
  t.ok(back.results[0]!.ok && back.results[0]!.model === 'fake-1', 'after the cooldown the probe goes to the recovered primary')
  t.same(await state(), { primary: 0, fallback_1: 0 })
})

t.test('every endpoint down and MODEL_FALLBACK_LOCAL=on: the local analyzer answers, the drain never stops', async (t) => {
  const [primary] = await fakes(t, 1)
  primary!.setBehaviour({ errorRate: 1 })
  const { analyzer, metrics } = router(t, { MODEL_BASE_URL: primary!.url, MODEL_FALLBACK_LOCAL: 'on' })
  const r = await analyzer.analyzeBatch([conv('x'), conv('y')])
  t.ok(r.results.every((x) => x.ok && x.model?.startsWith('local')), 'answered locally')
  t.equal((await metrics.modelFallbackLocal.get()).values[0]?.value, 2)
})

t.test('every endpoint down without the local fallback: the batch fails as a model call for the worker', async (t) => {
  const [primary, fallback] = await fakes(t, 2)
  primary!.setBehaviour({ errorRate: 1 })
  fallback!.setBehaviour({ errorRate: 1 })
  const { analyzer } = router(t, { MODEL_BASE_URL: primary!.url, MODEL_FALLBACKS: JSON.stringify([{ base_url: fallback!.url, model: 'fake-2' }]) })
  const err = await analyzer.analyzeBatch([conv('x')]).catch((e: unknown) => e)
  t.match(err, { name: 'ModelCallError', kind: 'error' })
  t.ok((err as { usage?: { calls: number } }).usage!.calls >= 2, 'what both endpoints spent is booked')
})
