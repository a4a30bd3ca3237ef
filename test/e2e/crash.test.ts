// A crash loses nothing: the real server process, SIGKILLed mid-drain with model calls in
// flight, is started again on the same database, and every acknowledged conversation ends
// analysed or skipped with exactly one insight. The killed instance's claims come back
// when their leases expire (PostgreSQL), or at once when the next process opens the folder
// (PGlite, which only one process can open).
import t from 'tap'
import { startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import { body, conversation, freshPostgresUrl, seedDataDir, tempDir, WAIT_LIMIT_MS, waitFor } from '../helper.ts'
import { checkAcknowledged, freePort, startServer, statusCounts, testPool } from './server-process.ts'

const skip = process.env.DATABASE_URL ? false : 'needs a real PostgreSQL: set DATABASE_URL (CI sets it)'

const BATCHES = 30
const BATCH_SIZE = 100
const SINGLES = 200
/** one in this many conversations is boilerplate the prefilter skips at ingest */
const SKIP_EVERY = 10
const LEASE_SECONDS = 5
const WORKER_CONCURRENCY = 2

type Ack = { id: string; status: string }

const post = (base: string, path: string, payload: unknown) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) })

const item = (i: number) => (i % SKIP_EVERY === 0 ? conversation({ messages: [{ role: 'user', content: 'thanks' }] }) : conversation())

t.test('SIGKILL mid-drain, restart: every acknowledged conversation ends analysed or skipped, one insight each', { skip }, async (t) => {
  const fake = await startFakeModelServer({ latencyMs: 150 })
  t.teardown(() => fake.close())
  const databaseUrl = await freshPostgresUrl(t)
  const pool = testPool(t, databaseUrl)
  // one port for both lives, so producers simply retry the same address across the crash
  const port = String(await freePort())
  const env = {
    DATABASE_URL: databaseUrl,
    PORT: port,
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    LEASE_SECONDS: String(LEASE_SECONDS),
    SWEEP_INTERVAL_MS: '200',
    BATCH_MAX: '20',
    BATCH_INITIAL: '20',
    WORKER_CONCURRENCY: String(WORKER_CONCURRENCY),
    // thousands of requests from one loopback address: the anonymous per-IP limit is not under test
    RATE_LIMIT_ANONYMOUS: '10000000'
  }
  const first = await startServer(t, { ...env, INSTANCE_ID: 'crash-a' })
  const base = first.base

  const acked = new Map<string, Ack>()
  const ack = (a: Ack) => acked.set(a.id, a)

  // a producer trickling single conversations through the crash and the restart: what the
  // dying process acknowledged must be stored; what it did not answer is not counted
  let trickling = true
  let trickleErrors = 0
  let trickleAcks = 0
  const trickle = (async () => {
    // a guard against trickling for ever; the restart below ends it long before on any machine
    const deadline = Date.now() + 3 * WAIT_LIMIT_MS
    for (let i = 0; trickling && Date.now() < deadline; i++) {
      try {
        const res = await post(base, '/api/v1/conversations', item(i))
        if (res.status === 202) {
          ack(await body(res))
          trickleAcks++
        } else await res.body?.cancel()
      } catch {
        trickleErrors++ // the process is dead or not yet listening
        await new Promise((r) => setTimeout(r, 20))
      }
    }
  })()
  t.teardown(async () => {
    trickling = false
    await trickle
  })

  // several thousand conversations: batches of 100 three at a time, singles beside them
  let next = 0
  const batchWorker = async () => {
    while (next < BATCHES) {
      next++
      const res = await post(base, '/api/v1/conversations/batch', {
        conversations: Array.from({ length: BATCH_SIZE }, (_, i) => item(i))
      })
      t.equal(res.status, 207, 'batch stored')
      const out: { results: Ack[] } = await body(res)
      for (const r of out.results) ack(r)
    }
  }
  let singles = 0
  const singleWorker = async () => {
    while (singles < SINGLES) {
      singles++
      const res = await post(base, '/api/v1/conversations', item(singles))
      if (res.status !== 202) t.fail(`single ingest answered ${res.status}: ${await res.text()}`)
      else ack(await body(res))
    }
  }
  await Promise.all([batchWorker(), batchWorker(), batchWorker(), singleWorker(), singleWorker()])
  t.ok(acked.size >= BATCHES * BATCH_SIZE + SINGLES, `acknowledged ${acked.size} conversations before the crash`)

  // some work done, then model calls that never answer, so the kill lands with claims held
  await waitFor(async () => (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM insights')).rows[0]!.n >= 200, {
    intervalMs: 50,
    what: 'the first insights'
  })
  const callsBeforeHang = fake.stats.calls
  fake.setBehaviour({ hang: true })
  // one hanging call is enough for held claims; waiting for every slot could wait a whole
  // model timeout (60 s) on a busy machine, where fair sharing runs one batch at a time,
  // while the producers kept posting a backlog larger than the drain wait allows
  await waitFor(() => fake.stats.calls > callsBeforeHang, { what: 'a batch waiting on the model' })
  await first.kill()

  const atCrash = await statusCounts(pool)
  const { rows: held } = await pool.query<{ id: string }>(
    "SELECT conversation_id AS id FROM conversation_queue WHERE state = 'processing' AND lease_owner = 'crash-a'"
  )
  t.ok(held.length > 0, `the killed instance left ${held.length} claims behind`)
  t.ok((atCrash.pending ?? 0) > 0, `${atCrash.pending} conversations still pending at the crash`)
  t.comment(`at the crash: ${JSON.stringify(atCrash)}`)

  fake.setBehaviour({ hang: false })
  const second = await startServer(t, { ...env, INSTANCE_ID: 'crash-b' })
  const acksBeforeRestart = trickleAcks
  await waitFor(() => trickleAcks >= acksBeforeRestart + 20, { what: 'ingest answering again after the restart' })
  trickling = false
  await trickle
  t.ok(trickleErrors > 0, 'the producer saw the outage between the kill and the restart')

  await waitFor(
    async () => {
      const c = await statusCounts(pool)
      return !c.pending && !c.processing && c
    },
    { intervalMs: 200, what: 'nothing pending or processing' }
  )

  const ids = [...acked.keys()]
  const check = await checkAcknowledged(pool, ids)
  t.equal(check.present, ids.length, 'every acknowledged conversation is in the database')
  t.equal((check.byStatus.analyzed ?? 0) + (check.byStatus.skipped ?? 0), ids.length, 'every one ended analysed or skipped')
  t.notOk(check.byStatus.failed, 'none failed')
  t.ok(check.byStatus.skipped, 'boilerplate was skipped')
  t.equal(check.wrongInsightCount, 0, 'exactly one insight per analysed conversation, none for skipped ones')
  t.equal(check.duplicateInsights, 0, 'no conversation has two insights')
  t.equal(check.insights, check.analyzed, 'insights count equals analysed count')

  const { rows: reclaimed } = await pool.query<{ attempts: number | null; queued: number }>(
    `SELECT i.attempts, (SELECT count(*)::int FROM conversation_queue q WHERE q.conversation_id = h.id) AS queued
     FROM unnest($1::uuid[]) AS h(id) LEFT JOIN insights i ON i.conversation_id = h.id`,
    [held.map((h) => h.id)]
  )
  t.ok(
    reclaimed.every((r) => r.attempts !== null && r.attempts >= 2 && r.queued === 0),
    'the dead instance\'s claims were reclaimed after their lease and analysed by the new one'
  )
  const health = await body(await fetch(`${second.base}/health`))
  t.match(health, { status: 'ok', instance_id: 'crash-b' })
})

t.test('PGlite: SIGKILL mid-batch, restart on the same folder: the dead process\'s claims are taken back at once, not after their lease', async (t) => {
  const fake = await startFakeModelServer({ latencyMs: 50 })
  t.teardown(() => fake.close())
  const dir = tempDir(t)
  await seedDataDir(dir)
  const env = {
    DATA_DIR: dir,
    PORT: String(await freePort()),
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    // far longer than this test may wait (WAIT_LIMIT_MS): only the take-back at start can finish it
    LEASE_SECONDS: '3600',
    SWEEP_INTERVAL_MS: '200',
    BATCH_MAX: '20',
    BATCH_INITIAL: '20',
    RATE_LIMIT_ANONYMOUS: '10000000'
  }
  const first = await startServer(t, { ...env, INSTANCE_ID: 'pglite-a' })
  fake.setBehaviour({ hang: true })
  const res = await post(first.base, '/api/v1/conversations/batch', { conversations: Array.from({ length: 60 }, () => conversation()) })
  t.equal(res.status, 207)
  const ids = ((await body(res)) as { results: Ack[] }).results.map((r) => r.id)
  await waitFor(async () => ((await body(await fetch(`${first.base}/health`))) as { claims: { in_flight: number } }).claims.in_flight > 0, {
    what: 'a batch claimed and waiting on the model'
  })
  await first.kill()

  fake.setBehaviour({ hang: false })
  const second = await startServer(t, { ...env, INSTANCE_ID: 'pglite-b' })
  const statuses = await waitFor(
    async () => {
      const all = await Promise.all(ids.map(async (id) => ((await body(await fetch(`${second.base}/api/v1/conversations/${id}`))) as { status: string; attempts: number })))
      return all.every((c) => c.status === 'analyzed') && all
    },
    { intervalMs: 200, what: 'every acknowledged conversation analysed after the restart' }
  )
  t.equal(statuses.length, ids.length, 'every acknowledged conversation analysed')
  t.ok(
    statuses.some((c) => c.attempts >= 2),
    'the claims the killed process held were taken back at start (their second attempt)'
  )
})
