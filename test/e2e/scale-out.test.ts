// Scale out: three server processes on one database drain 10,000 conversations between
// them. Leases (FOR UPDATE SKIP LOCKED) keep any two from analysing the same conversation,
// and every process does a share of the work.
import t from 'tap'
import { conversation, freshPostgresUrl, waitFor } from '../helper.ts'
import { checkAcknowledged, counterTotal, type ServerProcess, startServer, statusCounts, testPool } from './server-process.ts'

const skip = process.env.DATABASE_URL ? false : 'needs a real PostgreSQL: set DATABASE_URL (CI sets it)'

const INSTANCES = 3
const TOTAL = 10_000
const BATCH_SIZE = 100
/** batch requests in flight at once, spread round-robin over the instances */
const INGEST_CONCURRENCY = 6

t.test('three processes drain 10,000 conversations: one insight each, every process did a share', { skip }, async (t) => {
  const databaseUrl = await freshPostgresUrl(t)
  const pool = testPool(t, databaseUrl)
  const env = {
    DATABASE_URL: databaseUrl,
    // the local analyzer: what is under test is the sharing of work, not model latency
    MODEL_PROVIDER: 'local',
    SWEEP_INTERVAL_MS: '200',
    LEASE_SECONDS: '30',
    // 10,000 requests' worth of batches from one loopback address: the per-IP limit is not under test
    RATE_LIMIT_ANONYMOUS: '10000000'
  }
  // started together, as a deployment rolls out: start-up migration must not race
  const servers: ServerProcess[] = await Promise.all(
    Array.from({ length: INSTANCES }, (_, i) => startServer(t, { ...env, INSTANCE_ID: `scale-${i}` }))
  )

  const acked = new Set<string>()
  let next = 0
  const ingest = async () => {
    while (next < TOTAL / BATCH_SIZE) {
      const n = next++
      const server = servers[n % INSTANCES]!
      const res = await fetch(`${server.base}/api/v1/conversations/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ conversations: Array.from({ length: BATCH_SIZE }, () => conversation()) })
      })
      const out = (await res.json()) as { results: { id?: string }[]; accepted: number }
      if (res.status !== 207 || out.accepted !== BATCH_SIZE) t.fail(`batch ${n} on ${server.instanceId}: ${res.status} ${JSON.stringify(out).slice(0, 300)}`)
      for (const r of out.results) if (r.id) acked.add(r.id)
    }
  }
  await Promise.all(Array.from({ length: INGEST_CONCURRENCY }, ingest))
  t.equal(acked.size, TOTAL, `${TOTAL} conversations acknowledged across ${INSTANCES} instances`)

  await waitFor(
    async () => {
      const c = await statusCounts(pool)
      return !c.pending && !c.processing && c
    },
    { intervalMs: 250, what: 'nothing pending or processing' }
  )

  const check = await checkAcknowledged(pool, [...acked])
  t.equal(check.present, TOTAL, 'every acknowledged conversation is in the database')
  t.equal(check.byStatus.analyzed, TOTAL, 'every one analysed')
  t.notOk(check.byStatus.failed, 'none failed')
  t.equal(check.insights, TOTAL, `${TOTAL} insights`)
  t.equal(check.duplicateInsights, 0, 'no conversation has two insights')
  t.equal(check.wrongInsightCount, 0, 'exactly one insight per conversation')
  // a claim counts an attempt: more than one would mean two instances took the same row
  const { rows: reclaimed } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM insights WHERE attempts <> 1')
  t.equal(reclaimed[0]!.n, 0, 'every conversation was claimed exactly once')

  // the counter moves just after the insight's commit: wait for it rather than race it
  const storedBy = await waitFor(
    async () => {
      const counts = await Promise.all(
        servers.map(async (s) => counterTotal(await (await fetch(`${s.base}/metrics`)).text(), 'gleaner_insights_stored_total'))
      )
      return counts.reduce((a, b) => a + b, 0) === TOTAL && counts
    },
    { intervalMs: 100, what: 'every instance counted what it stored' }
  )
  t.comment(`insights stored per instance: ${servers.map((s, i) => `${s.instanceId}=${storedBy[i]}`).join(', ')}`)
  for (const [i, s] of servers.entries()) t.ok(storedBy[i]! > 0, `${s.instanceId} stored a share of the insights`)
  t.equal(
    storedBy.reduce((a, b) => a + b, 0),
    check.insights,
    'the instances\' counts add up to the insights in the database'
  )
})
