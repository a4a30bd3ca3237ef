import t from 'tap'
import { ConfigError, loadConfig, parseModelPrices, tierLimits } from '../src/config.ts'

t.test('defaults need nothing and give the documented values', async (t) => {
  const c = loadConfig({})
  t.equal(c.PORT, 3000)
  t.equal(c.HOST, '127.0.0.1')
  t.equal(c.DATA_DIR, './data')
  t.equal(c.MODEL_PROVIDER, 'local')
  t.equal(c.AUTH, 'on')
  t.equal(c.DATABASE_URL, undefined)
  t.equal(c.DAILY_BUDGET_USD, undefined)
  t.ok(Object.isFrozen(c), 'config is frozen')
})

t.test('numbers and booleans are parsed from text', async (t) => {
  const c = loadConfig({ PORT: '8080', WORKER_ENABLED: 'false', DAILY_BUDGET_USD: '2.5' })
  t.equal(c.PORT, 8080)
  t.equal(c.WORKER_ENABLED, false)
  t.equal(c.DAILY_BUDGET_USD, 2.5)
})

t.test('a bad value stops the start with a message naming the variable', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), { name: 'ConfigError', message: /PORT/ })
  t.throws(() => loadConfig({ MODEL_PROVIDER: 'magic' }), /MODEL_PROVIDER/)
  t.throws(() => loadConfig({ BATCH_MIN: '50', BATCH_MAX: '10' }), /BATCH_MIN/)
  t.throws(() => loadConfig({ MODEL_PROVIDER: 'openai-compatible' }), /MODEL_BASE_URL/)
  t.throws(() => loadConfig({ MODEL_PRICES: 'nonsense' }), { name: 'ConfigError', message: /MODEL_PRICES/ })
})

t.test('every invalid configuration throws a ConfigError, which the server turns into exit code 78', async (t) => {
  for (const env of [{ PORT: 'eighty' }, { PORT: '70000' }, { AUTH: 'maybe' }, { BATCH_MIN: '50', BATCH_MAX: '10' }, { MODEL_PROVIDER: 'openai-compatible' }]) {
    t.throws(() => loadConfig(env), ConfigError, JSON.stringify(env))
  }
})

t.test('model prices parse per model', async (t) => {
  const p = parseModelPrices('grok-4=3/15, gpt-4o-mini=0.15/0.6')
  t.same(p.get('grok-4'), { input: 3, output: 15 })
  t.same(p.get('gpt-4o-mini'), { input: 0.15, output: 0.6 })
})

t.test('one table gives every tier its request limits and quotas, from the documented defaults', async (t) => {
  const { tiers, anonymous } = tierLimits(loadConfig({}))
  t.same(tiers, {
    free: { reads: 60, ingests: 30, daily: 1_000, monthly: 20_000 },
    pro: { reads: 600, ingests: 300, daily: 100_000, monthly: 2_000_000 },
    enterprise: { reads: 6_000, ingests: 3_000, daily: 10_000_000, monthly: 200_000_000 }
  })
  t.same(anonymous, { reads: 600, ingests: 300 })
})

t.test('ingest limits follow RATE_LIMIT_INGEST_FACTOR and never drop to 0', async (t) => {
  const { tiers } = tierLimits(loadConfig({ RATE_LIMIT_FREE: '3', RATE_LIMIT_INGEST_FACTOR: '0.1', RATE_LIMIT_PRO: '1000' }))
  t.equal(tiers.free.ingests, 1)
  t.equal(tiers.pro.ingests, 100)
})

t.test('METRICS_PORT is unset by default, a port when given, and never the API’s own port', async (t) => {
  t.equal(loadConfig({}).METRICS_PORT, undefined)
  t.equal(loadConfig({ METRICS_PORT: '9464' }).METRICS_PORT, 9464)
  t.throws(() => loadConfig({ METRICS_PORT: 'metrics' }), { name: 'ConfigError', message: /METRICS_PORT/ })
  t.throws(() => loadConfig({ METRICS_PORT: '0' }), { name: 'ConfigError', message: /METRICS_PORT/ })
  t.throws(() => loadConfig({ PORT: '8080', METRICS_PORT: '8080' }), { name: 'ConfigError', message: /METRICS_PORT must differ from PORT/ })
})
