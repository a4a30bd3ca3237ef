// Analytical reads on PostgreSQL run on their own, smaller pool with their own statement
// timeout: reads stuck on every analytical connection leave ingest its connections, and a
// read cut by the timeout (SQLSTATE 57014) is a 503 with Retry-After, never a 500.
// A lock on the insights table and its rollups makes the reads wait for as long as the test wants.

import { sql } from 'drizzle-orm'
import pg from 'pg'
import t from 'tap'
import { request } from 'undici'
import { backendEnv, buildTestApp, conversation, listen, waitFor } from '../helper.ts'

const skip = process.env.DATABASE_URL ? false : 'needs a real PostgreSQL: set DATABASE_URL (CI sets it)'

async function lockInsights(t: { teardown(fn: () => unknown): void }, url: string) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  await client.query('BEGIN')
  // the summary reads the rollups, the lists read insights: both wait
  await client.query('LOCK TABLE insights, insight_rollups, insight_rollups_narrow, insight_topic_rollups, insight_topic_totals IN ACCESS EXCLUSIVE MODE')
  let held = true
  const release = async () => {
    if (!held) return
    held = false
    await client.query('COMMIT')
    await client.end()
  }
  t.teardown(release)
  return { client, release }
}

t.test('a read cut by the statement timeout is a 503 with Retry-After', { skip }, async (t) => {
  const env = await backendEnv(t, 'postgres')
  const app = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false', DB_READ_STATEMENT_TIMEOUT_MS: '300' })
  const lock = await lockInsights(t, env.DATABASE_URL!)
  for (const url of ['/api/v1/insights/summary', '/api/v1/insights']) {
    const res = await app.inject({ url })
    t.equal(res.statusCode, 503, `${url}: 503`)
    t.equal(res.json().error.code, 'UNAVAILABLE')
    t.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After')
  }
  await lock.release()
  t.equal((await app.inject({ url: '/api/v1/insights/summary' })).statusCode, 200, 'served once the table is free')
})

t.test('reads waiting on every analytical connection leave ingest its connections', { skip }, async (t) => {
  const env = await backendEnv(t, 'postgres')
  const app = await buildTestApp(t, {
    ...env,
    WORKER_ENABLED: 'false',
    DB_POOL_MAX: '4',
    DB_READ_POOL_MAX: '2',
    DB_READ_STATEMENT_TIMEOUT_MS: '120000'
  })
  const base = await listen(app)
  const lock = await lockInsights(t, env.DATABASE_URL!)
  const summaries = Array.from({ length: 8 }, async () => {
    const res = await request(`${base}/api/v1/insights/summary`)
    await res.body.dump()
    return res.statusCode
  })
  // a separate connection: inside the lock's transaction pg_stat_activity is a frozen snapshot
  const observer = new pg.Client({ connectionString: env.DATABASE_URL })
  await observer.connect()
  t.teardown(() => observer.end())
  await waitFor(
    async () => {
      const { rows } = await observer.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`
      )
      return rows[0].n >= 2
    },
    { what: 'reads waiting on the lock' }
  )
  const ingest: number[] = []
  for (let i = 0; i < 5; i++) {
    const res = await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })
    ingest.push(res.statusCode)
  }
  t.same(ingest, [202, 202, 202, 202, 202], 'ingest is served while every read connection waits')
  const { rows } = await observer.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`
  )
  t.ok(rows[0].n <= 2, `at most DB_READ_POOL_MAX reads hold connections (${rows[0].n})`)
  await lock.release()
  const statuses = await Promise.all(summaries)
  t.ok(
    statuses.every((s) => s === 200 || s === 503),
    `queued reads are served or refused with 503, never a 500 (${statuses.join(',')})`
  )
})

t.test('both pools run with JIT off: compiling a plan cost more than running any of our statements', { skip }, async (t) => {
  const env = await backendEnv(t, 'postgres')
  const app = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
  const jitOf = async (database: typeof app.database) => (await database.query<{ jit: string }>(sql`SHOW jit`))[0]?.jit
  t.equal(await jitOf(app.database), 'off', 'the pool of ingest and the worker')
  t.ok(app.database.analytics, 'PostgreSQL has a separate read pool')
  t.equal(await jitOf(app.database.analytics!), 'off', 'the read pool')
})
