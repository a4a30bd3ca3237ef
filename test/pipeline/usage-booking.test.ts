// The usage stage on a real database: spend goes to the budget and the usage table, once.
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { usageRepository } from '../../src/db/usage.ts'
import { DailyBudget } from '../../src/pipeline/budget.ts'
import { bookUsage } from '../../src/pipeline/usage-booking.ts'
import { testConfig } from '../helper.ts'

const database = await openDatabase(testConfig({ DATA_DIR: 'memory://' }), pino({ level: 'silent' }))
t.teardown(() => database.close())
const usage = usageRepository(database)
const DAY = new Date('2026-03-04T12:00:00Z')
const spent = { calls: 2, input: 1_000, output: 200, cost_usd: 0.25 }

t.test('a billable batch adds its cost to the budget and its tokens to the day’s usage row', async (t) => {
  const budget = new DailyBudget(10, usage, () => DAY)
  await bookUsage({ analyzer: { billable: true, model: 'model-a' }, budget, usage }, spent)
  t.equal(budget.spentToday(), 0.25)
  await bookUsage({ analyzer: { billable: true, model: 'model-a' }, budget, usage }, spent)
  t.equal(budget.spentToday(), 0.5)
  const rows = await usage.report()
  t.match(rows, [{ model: 'model-a', calls: 4, inputTokens: 2_000, outputTokens: 400, costUsd: 0.5 }])
})

t.test('spend split by model (fallbacks) is booked under each model that spent it', async (t) => {
  const budget = new DailyBudget(10, usage, () => DAY)
  const split = {
    calls: 3,
    input: 300,
    output: 30,
    cost_usd: 0.3,
    byModel: { 'model-p': { calls: 1, input: 100, output: 0, cost_usd: 0 }, 'model-f': { calls: 2, input: 200, output: 30, cost_usd: 0.3 } }
  }
  await bookUsage({ analyzer: { billable: true, model: 'model-p' }, budget, usage }, split)
  t.equal(budget.spentToday(), 0.3)
  const rows = await usage.report()
  t.match(
    rows.find((r) => r.model === 'model-f'),
    { calls: 2, inputTokens: 200, outputTokens: 30 }
  )
  t.match(
    rows.find((r) => r.model === 'model-p'),
    { calls: 1, inputTokens: 100 }
  )
})

t.test('a free analyzer, a batch without calls or without usage books nothing', async (t) => {
  const budget = new DailyBudget(10, usage, () => DAY)
  await bookUsage({ analyzer: { billable: false, model: 'local' }, budget, usage }, spent)
  await bookUsage({ analyzer: { billable: true, model: 'model-b' }, budget, usage }, { ...spent, calls: 0 })
  await bookUsage({ analyzer: { billable: true, model: 'model-b' }, budget, usage }, undefined)
  t.equal(budget.spentToday(), 0)
  t.same(
    (await usage.report()).filter((r) => r.model === 'model-b' || r.model === 'local'),
    []
  )
})

t.test('the budget closes even when the usage write fails', async (t) => {
  const budget = new DailyBudget(0.2, usage, () => DAY)
  const failing = { ...usage, addMany: async () => Promise.reject(new Error('connection reset')) }
  await t.rejects(bookUsage({ analyzer: { billable: true, model: 'model-c' }, budget, usage: failing }, spent), /connection reset/)
  t.equal(budget.exhausted(), true)
})
