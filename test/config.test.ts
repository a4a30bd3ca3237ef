import t from 'tap'
import { ConfigError, loadConfig, parseModelPrices } from '../src/config.ts'

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
  t.ok(new ConfigError('x') instanceof Error)
})

t.test('model prices parse per model', async (t) => {
  const p = parseModelPrices('grok-4=3/15, gpt-4o-mini=0.15/0.6')
  t.same(p.get('grok-4'), { input: 3, output: 15 })
  t.same(p.get('gpt-4o-mini'), { input: 0.15, output: 0.6 })
})
