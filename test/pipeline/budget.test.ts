// The daily budget over a real model_usage table, on both back ends.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t, { type Test } from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { usageRepository } from '../../src/db/usage.ts'
import { DailyBudget } from '../../src/pipeline/budget.ts'
import { backendEnv, backends, testConfig } from '../helper.ts'

async function openTestDatabase(t: Test, env: Record<string, string>) {
  const database = await openDatabase(testConfig(env), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  return database
}

const usage = (costUsd: number) => ({ calls: 1, input: 100, output: 20, costUsd })

/** A clock the test moves by hand. */
function clock(iso: string) {
  let now = new Date(iso)
  return {
    now: () => now,
    set(to: string) {
      now = new Date(to)
    }
  }
}

for (const backend of backends()) {
  t.test(backend, async (t) => {
    // one database per back end, emptied before each test: opening PGlite takes seconds
    const env = await backendEnv(t, backend)
    const database = await openTestDatabase(t, env)
    const repo = usageRepository(database)
    t.beforeEach(async () => {
      await database.query(sql`TRUNCATE model_usage`)
    })

    t.test('without a limit the budget is never exhausted', async (t) => {
      await repo.addMany([{ model: 'm', ...usage(1_000_000) }])
      const budget = new DailyBudget(undefined, repo)
      await budget.refresh()
      t.equal(budget.limit, undefined)
      t.equal(budget.spentToday(), 1_000_000, 'spend is still tracked')
      t.equal(budget.exhausted(), false)
      t.equal(budget.remaining(), null)
      budget.add(5_000_000)
      t.equal(budget.exhausted(), false)
    })

    t.test('the budget is exhausted once today’s spend reaches the limit', async (t) => {
      const budget = new DailyBudget(1, repo)
      await budget.refresh()
      t.equal(budget.exhausted(), false)
      t.equal(budget.remaining(), 1)
      budget.add(0.4)
      budget.add(0.5)
      t.equal(budget.exhausted(), false, 'below the limit')
      t.ok(Math.abs(budget.remaining()! - 0.1) < 1e-9)
      budget.add(0.1)
      t.equal(budget.exhausted(), true, 'at the limit')
      budget.add(0.5)
      t.equal(budget.exhausted(), true, 'past the limit')
      t.equal(budget.remaining(), 0, 'remaining never goes negative')
    })

    t.test('a zero limit is exhausted from the start', async (t) => {
      const budget = new DailyBudget(0, repo)
      await budget.refresh()
      t.equal(budget.exhausted(), true)
    })

    t.test('refresh reads spend written to the database by another instance, over every model', async (t) => {
      // on PostgreSQL the other instance has its own pool; PGlite is one process's database
      const other = backend === 'postgres' ? usageRepository(await openTestDatabase(t, env)) : usageRepository(database)
      const budget = new DailyBudget(2, repo)
      await budget.refresh()
      t.equal(budget.spentToday(), 0)
      await other.addMany([{ model: 'gpt-4o-mini', ...usage(0.75) }])
      await other.addMany([{ model: 'gpt-4o-mini', ...usage(0.5) }])
      await other.addMany([{ model: 'grok-4', ...usage(0.75) }])
      t.equal(budget.spentToday(), 0, 'not seen before a refresh')
      await budget.refresh()
      t.equal(budget.spentToday(), 2)
      t.equal(budget.exhausted(), true)
    })

    t.test('refresh ignores spend of other days', async (t) => {
      const c = clock('2026-03-10T12:00:00Z')
      await repo.addMany([{ model: 'm', ...usage(5) }], '2026-03-09')
      await repo.addMany([{ model: 'm', ...usage(7) }], '2026-03-11')
      await repo.addMany([{ model: 'm', ...usage(0.25) }], '2026-03-10')
      const budget = new DailyBudget(1, repo, c.now)
      await budget.refresh()
      t.equal(budget.spentToday(), 0.25)
      t.equal(budget.exhausted(), false)
    })

    t.test('a new UTC day starts with nothing spent', async (t) => {
      const c = clock('2026-03-10T23:59:59.000Z')
      await repo.addMany([{ model: 'm', ...usage(3) }], '2026-03-10')
      const budget = new DailyBudget(3, repo, c.now)
      await budget.refresh()
      t.equal(budget.exhausted(), true, 'spent on the 10th')
      c.set('2026-03-11T00:00:00.000Z')
      t.equal(budget.spentToday(), 0, 'the 11th begins at zero without a refresh')
      t.equal(budget.exhausted(), false)
      budget.add(1)
      await repo.addMany([{ model: 'm', ...usage(1) }], '2026-03-11')
      await budget.refresh()
      t.equal(budget.spentToday(), 1, 'refresh reads the new day’s row, not yesterday’s')
    })

    t.test('money added late on one day does not count on the next', async (t) => {
      const c = clock('2026-03-10T23:00:00.000Z')
      const budget = new DailyBudget(10, repo, c.now)
      await budget.refresh()
      budget.add(4)
      c.set('2026-03-11T01:00:00.000Z')
      budget.add(1)
      t.equal(budget.spentToday(), 1)
    })

    t.test('the budget is judged by the UTC day, not the local one', async (t) => {
      // 23:30 in New York on the 10th is already the 11th in UTC
      const c = clock('2026-03-10T23:30:00-05:00')
      await repo.addMany([{ model: 'm', ...usage(9) }], '2026-03-10')
      const budget = new DailyBudget(5, repo, c.now)
      await budget.refresh()
      t.equal(budget.spentToday(), 0)
    })
  })
}

t.test('resetsAt is the next UTC midnight', async (t) => {
  // resetsAt needs no database: the repository is never called
  const repo = {} as ReturnType<typeof usageRepository>
  const at = (iso: string) => new DailyBudget(1, repo, () => new Date(iso)).resetsAt().toISOString()
  t.equal(at('2026-03-10T12:34:56.789Z'), '2026-03-11T00:00:00.000Z')
  t.equal(at('2026-03-10T00:00:00.000Z'), '2026-03-11T00:00:00.000Z', 'at midnight, the next one')
  t.equal(at('2026-03-10T23:59:59.999Z'), '2026-03-11T00:00:00.000Z')
  t.equal(at('2026-02-28T10:00:00.000Z'), '2026-03-01T00:00:00.000Z', 'end of month')
  t.equal(at('2028-02-28T10:00:00.000Z'), '2028-02-29T00:00:00.000Z', 'leap year')
  t.equal(at('2026-12-31T23:00:00.000Z'), '2027-01-01T00:00:00.000Z', 'end of year')
  t.equal(at('2026-03-10T20:00:00-05:00'), '2026-03-12T00:00:00.000Z', 'an offset time is read in UTC')
})
