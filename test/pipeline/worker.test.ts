// The worker as the pipeline runs it: a crashed instance's expired claims are taken back and
// analysed; a claim that expired on its last attempt becomes a dead letter; identical texts
// in one batch are analysed once; the loop outlives any single failure; ingest's prefilter
// verdict is final; an item failing alone is counted under its real cause.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { startFakeModelServer } from '../../loadtest/fake-model-server.ts'
import type { Analyzer } from '../../src/analyzers/analyzer.ts'
import { createLocalAnalyzer } from '../../src/analyzers/local.ts'
import { analysisCacheRepository } from '../../src/db/analysis-cache.ts'
import { type ConversationsRepository, conversationsRepository } from '../../src/db/conversations.ts'
import { type InsightsRepository, insightsRepository } from '../../src/db/insights.ts'
import { usageRepository } from '../../src/db/usage.ts'
import { createMetrics } from '../../src/metrics.ts'
import { AdaptiveBatchSize } from '../../src/pipeline/batch-size.ts'
import { CircuitBreaker } from '../../src/pipeline/breaker.ts'
import { DailyBudget } from '../../src/pipeline/budget.ts'
import { AnalysisCache } from '../../src/pipeline/cache.ts'
import { textHash } from '../../src/pipeline/normalize.ts'
import { WorkQueue } from '../../src/pipeline/queue.ts'
import { Worker } from '../../src/pipeline/worker.ts'
import { backendEnv, backends, buildTestApp, conversation, openMemoryDatabase, tempDir, testConfig, waitFor } from '../helper.ts'

type T = { teardown(fn: () => unknown): void }

/**
 * A Worker built by hand over a real PGlite database and the real local analyzer, so a test
 * can hand it a breaker on a test clock and wrap a repository to inject one failure.
 */
async function handBuiltWorker(
  t: T,
  opts: {
    conversations?: (real: ConversationsRepository) => ConversationsRepository
    insights?: (real: InsightsRepository) => InsightsRepository
    breaker?: CircuitBreaker
    analyzer?: (real: Analyzer) => Analyzer
    loopLagMs?: () => number
    env?: Record<string, string>
  } = {}
) {
  const config = testConfig({ DATA_DIR: 'memory://', INSTANCE_ID: 'hand-built', ...opts.env })
  const database = await openMemoryDatabase()
  t.teardown(() => database.close())
  const real = conversationsRepository(database)
  const conversations = opts.conversations ? opts.conversations(real) : real
  const realInsights = insightsRepository(database)
  const insights = opts.insights ? opts.insights(realInsights) : realInsights
  const usage = usageRepository(database)
  const local = createLocalAnalyzer()
  const analyzer = opts.analyzer ? opts.analyzer(local) : local
  const worker = new Worker({
    config,
    conversations,
    insights,
    usage,
    queue: new WorkQueue(config.QUEUE_MAX),
    cache: new AnalysisCache(analysisCacheRepository(database), { ttlSeconds: 3600, lruSize: 100 }),
    analyzer,
    breaker: opts.breaker ?? new CircuitBreaker({ failureThreshold: 5, cooldownMs: 30_000 }),
    batchSize: new AdaptiveBatchSize({ min: 1, max: 10, initial: 10, latencyTargetMs: 10_000 }),
    budget: new DailyBudget(undefined, usage),
    metrics: createMetrics({ defaultMetrics: false }),
    logger: pino({ level: 'silent' }),
    ...(opts.loopLagMs ? { loopLagMs: opts.loopLagMs } : {})
  })
  t.teardown(async () => {
    await worker.stop()
    await local.close()
  })
  const pending = async (texts: string[]) => {
    const rows = texts.map((content) => {
      const messages = [{ role: 'user' as const, content }]
      return { producer: '', source: 'web-chat', messages, textHash: textHash(messages), status: 'pending' as const }
    })
    return (await real.insertMany(rows)).map((r) => r.id)
  }
  return { worker, database, insights, pending, real }
}

const texts = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `Order ${tag}-${i} arrived broken and nobody answers my emails.`)

t.test('the loop survives a database error while handing back a batch the breaker refused', async (t) => {
  let now = 0
  const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 30_000, now: () => now })
  let opened = false
  // the database is away for releases until the test has seen the claims reported stranded
  let releasesFail = true
  let signalReleaseFailed: () => void = () => {}
  const releaseFailed = new Promise<void>((resolve) => {
    signalReleaseFailed = resolve
  })
  const { worker, database, insights, pending, real } = await handBuiltWorker(t, {
    breaker,
    conversations: (real) => ({
      ...real,
      // another batch's failure opens the circuit while this claim is in flight
      async claimOldest(...args) {
        const rows = await real.claimOldest(...args)
        if (rows.length && !opened) {
          opened = true
          breaker.recordFailure()
        }
        return rows
      },
      // ...and handing the claimed rows back then fails (and the sweep's retries too)
      async releaseClaims(...args) {
        if (args[0] !== 'all' && releasesFail) {
          signalReleaseFailed()
          throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' })
        }
        return real.releaseClaims(...args)
      }
    })
  })
  const first = await pending(texts(3, 'a'))
  await worker.start()
  await releaseFailed
  t.equal(breaker.state, 'open')
  await waitFor(() => worker.status().claims.stranded === 3, { what: 'the failed release kept as stranded claims' })
  t.same(worker.status().claims, { in_flight: 0, stranded: 3 }, 'held but idle, and reported so')
  releasesFail = false // the database is back
  await waitFor(() => worker.status().claims.stranded === 0, { what: 'a sweep retrying the release' })
  t.equal((await real.queueEntry(first[0]!))?.state, 'pending', 'the retried release handed them back, before their lease ran out')

  // the cooldown passes, the stranded claims' leases run out, new work arrives
  now += 30_001
  await database.query(sql`UPDATE conversation_queue SET lease_expires_at = now() - interval '1 second' WHERE state = 'processing'`)
  const second = await pending(texts(2, 'b'))
  await worker.sweep()
  await waitFor(async () => (await insights.getMany([...first, ...second])).length === 5, { what: 'every conversation analysed' })
  t.equal(worker.status().running, true, 'the loop is still running')
  t.equal(breaker.state, 'closed', 'the probe succeeded')
})

t.test('while the event loop is late, the worker runs one batch at a time (and still drains everything)', async (t) => {
  let inFlight = 0
  let most = 0
  const { worker, insights, pending } = await handBuiltWorker(t, {
    loopLagMs: () => 1_000, // far past INGEST_LAG_BUDGET_MS
    analyzer: (real) =>
      Object.assign(Object.create(real) as Analyzer, {
        async analyzeBatch(...args: Parameters<Analyzer['analyzeBatch']>) {
          most = Math.max(most, ++inFlight)
          try {
            // a turn of the loop, so a second batch could start if the worker allowed it
            await new Promise((r) => setImmediate(r))
            return await real.analyzeBatch(...args)
          } finally {
            inFlight--
          }
        }
      })
  })
  const ids = await pending(texts(60, 'lag'))
  await worker.start()
  await waitFor(async () => (await insights.getMany(ids)).length === 60, { what: 'all analysed' })
  t.equal(most, 1, 'never two batches at once (WORKER_CONCURRENCY is 2)')
})

/** Wraps claimOldest to record how many rows each claim brought back. */
const countingClaims = (sizes: number[]) => (real: ConversationsRepository): ConversationsRepository => ({
  ...real,
  async claimOldest(...args) {
    const rows = await real.claimOldest(...args)
    sizes.push(rows.length)
    return rows
  }
})

/** An analyzer that records the size of every batch it is handed. */
const countingBatches = (sizes: number[]) => (real: Analyzer): Analyzer =>
  Object.assign(Object.create(real) as Analyzer, {
    analyzeBatch(...args: Parameters<Analyzer['analyzeBatch']>) {
      sizes.push(args[0].length)
      return real.analyzeBatch(...args)
    }
  })

t.test('one claim fills every free slot: two batches of 10 from one statement (WORKER_CONCURRENCY 2)', async (t) => {
  const claims: number[] = []
  const batches: number[] = []
  const { worker, insights, pending } = await handBuiltWorker(t, { conversations: countingClaims(claims), analyzer: countingBatches(batches) })
  const ids = await pending(texts(20, 'slots'))
  await worker.start()
  await waitFor(async () => (await insights.getMany(ids)).length === 20, { what: 'all analysed' })
  t.equal(claims[0], 20, 'the first claim took rows for both slots')
  t.same(batches.slice(0, 2), [10, 10], 'and handed them out as two batches of the adaptive size')
})

t.test('a circuit that opens while a claim for several slots is in flight probes with one batch and hands the rest back', async (t) => {
  let now = 0
  const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 30_000, now: () => now })
  const claims: number[] = []
  let opened = false
  const { worker, insights, pending } = await handBuiltWorker(t, {
    breaker,
    conversations: (real) => ({
      ...real,
      async claimOldest(...args) {
        const rows = await real.claimOldest(...args)
        claims.push(rows.length)
        if (rows.length && !opened) {
          // another batch's failure opens the circuit, and its cooldown ends before the claim does
          opened = true
          breaker.recordFailure()
          now += 30_001
        }
        return rows
      }
    })
  })
  const ids = await pending(texts(20, 'race'))
  await worker.start()
  await waitFor(async () => (await insights.getMany(ids)).length === 20, { what: 'all analysed after the probe' })
  t.same(claims.slice(0, 2), [20, 10], 'the probe kept one batch; the other was handed back and claimed once the circuit closed')
  t.equal(breaker.state, 'closed')
})

t.test('stop() ends while every slot hangs on its model call: it aborts them after its timeout and hands their rows back', async (t) => {
  let hung = 0
  let allHung: () => void = () => {}
  const bothHung = new Promise<void>((r) => {
    allHung = r
  })
  const { worker, pending, real } = await handBuiltWorker(t, {
    env: { SHUTDOWN_TIMEOUT_MS: '100' },
    analyzer: (realAnalyzer) =>
      Object.assign(Object.create(realAnalyzer) as Analyzer, {
        // a call that never answers and gives up only when aborted
        analyzeBatch: (_items: unknown, signal?: AbortSignal) =>
          new Promise((_resolve, reject) => {
            if (++hung === 2) allHung()
            signal?.addEventListener('abort', () => reject(signal.reason))
          })
      })
  })
  const ids = await pending(texts(20, 'hung'))
  await worker.start()
  await bothHung // both slots taken: the loop is parked waiting for one to free
  await worker.stop() // before the mend this never returned: the loop waited for a slot, shutdown for the loop
  for (const id of ids) t.equal((await real.queueEntry(id))?.state, 'pending', 'handed back, not left claimed')
})

t.test('the batches of one claim store in one statement, and claim again together', async (t) => {
  const claims: number[] = []
  const stores: number[] = []
  // each batch's analysis is handed back only when its sibling's is done too, so the two end
  // in the same turn whatever the machine's load (how long a batch waits for a sibling that
  // is late is ClaimGroup's, tested in store.test.ts)
  let done = 0
  let bothDone: () => void = () => {}
  let barrier = new Promise<void>((r) => {
    bothDone = r
  })
  const { worker, insights, pending } = await handBuiltWorker(t, {
    analyzer: (real) =>
      Object.assign(Object.create(real) as Analyzer, {
        async analyzeBatch(...args: Parameters<Analyzer['analyzeBatch']>) {
          const result = await real.analyzeBatch(...args)
          const mine = barrier
          if (++done % 2 === 0) {
            bothDone()
            barrier = new Promise<void>((r) => {
              bothDone = r
            })
          }
          // an odd batch out (never expected) fails the test's assertions instead of hanging it
          await Promise.race([mine, new Promise((r) => setTimeout(r, 5_000).unref())])
          return result
        }
      }),
    conversations: countingClaims(claims),
    insights: (real) => ({
      ...real,
      storeMany(items, ...rest) {
        stores.push(items.length)
        return real.storeMany(items, ...rest)
      }
    })
  })
  const ids = await pending(texts(40, 'siblings'))
  await worker.start()
  await waitFor(async () => (await insights.getMany(ids)).length === 40, { what: 'all analysed' })
  t.same(claims.slice(0, 2), [20, 20], 'two claims of two batches each')
  t.same(stores, [20, 20], 'one store statement a claim')
})

t.test("an open circuit's probe claims one batch, not one for every free slot", async (t) => {
  let now = 0
  const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 30_000, now: () => now })
  breaker.recordFailure()
  now += 30_001 // the cooldown is over: the next batch is the probe
  const claims: number[] = []
  const { worker, insights, pending } = await handBuiltWorker(t, { breaker, conversations: countingClaims(claims) })
  const ids = await pending(texts(20, 'probe'))
  await worker.start()
  await waitFor(async () => (await insights.getMany(ids)).length === 20, { what: 'all analysed after the probe' })
  t.equal(claims[0], 10, 'the probe took one batch')
  t.equal(breaker.state, 'closed', 'and closed the circuit')
})

t.test('a batch in flight longer than its lease keeps its claims: the heartbeat renews them', async (t) => {
  const fake = await startFakeModelServer({ port: 0 })
  t.teardown(() => fake.close())
  fake.setBehaviour({ hang: true }) // the model never answers while the test looks
  const LEASE_SECONDS = 3
  const app = await buildTestApp(t, {
    DATA_DIR: 'memory://',
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    MODEL_MAX_RETRIES: '0',
    MODEL_TIMEOUT_MS: '600000',
    LEASE_SECONDS: String(LEASE_SECONDS)
  })
  const { id } = (await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })).json()
  const repo = app.repos.conversations
  const claim = await waitFor(async () => {
    const q = await repo.queueEntry(id)
    return q?.state === 'processing' && q.leaseExpiresAt ? q : null
  }, { what: 'the claim' })
  const first = claim.leaseExpiresAt!.getTime()
  // past the first lease's end, the claim is still this instance's, with a later expiry
  const renewed = await waitFor(async () => {
    const q = await repo.queueEntry(id)
    return Date.now() > first + 500 && q?.leaseExpiresAt && q.leaseExpiresAt.getTime() > Date.now() ? q : null
  }, { what: 'a renewed lease past the first one' })
  t.equal(renewed.leaseOwner, claim.leaseOwner, 'still held by the instance that claimed it')
  t.same(await repo.reclaimExpired(5), { requeued: 0, failed: 0 }, "another instance's sweep finds nothing to take")
  t.equal(renewed.attempts, 1, 'the claim was never lost and taken again')
  t.same(app.pipeline.worker.status().claims, { in_flight: 1, stranded: 0 }, '/health reports it in flight')
})

t.test('an exclusive database (PGlite) hands a dead process\'s claims back at start, not after their lease', async (t) => {
  const dir = tempDir(t)
  const env = await backendEnv(t, 'pglite', { dataDir: dir })
  const first = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
  const { id } = (await first.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })).json()
  // as a process killed mid-batch leaves it: claimed, with most of a long lease to run
  await first.database.query(sql`
    UPDATE conversation_queue SET state = 'processing', lease_owner = 'killed-process', attempts = 1,
      lease_expires_at = now() + interval '1 hour' WHERE conversation_id = ${id}`)
  await first.close()
  const next = await buildTestApp(t, env)
  const row = await waitFor(async () => {
    const c = await next.repos.conversations.getById(id)
    return c?.status === 'analyzed' ? c : null
  }, { what: 'analysed by the next process' })
  t.equal(row.attempts, 2, 'the dead process\'s claim counted as an attempt')
})

t.test('a step that throws anywhere is logged and the loop goes on', async (t) => {
  class OnceBrokenBreaker extends CircuitBreaker {
    broken = true
    override get state() {
      if (this.broken) {
        this.broken = false
        throw new Error('injected: a bug in a loop step')
      }
      return super.state
    }
  }
  const { worker, insights, pending } = await handBuiltWorker(t, { breaker: new OnceBrokenBreaker({ failureThreshold: 5, cooldownMs: 30_000 }) })
  const ids = await pending(texts(2, 'c'))
  await worker.start()
  await waitFor(async () => (await insights.getMany(ids)).length === 2, { what: 'analysed after the failed step' })
  t.equal(worker.status().running, true)
})

t.test("ingest's prefilter verdict is final: a pending row the prefilter would skip is analysed", async (t) => {
  const { worker, real, pending } = await handBuiltWorker(t)
  const [id] = await pending(['thanks'])
  await worker.start()
  const row = await waitFor(async () => {
    const r = await real.getById(id!)
    return r?.status !== 'pending' && r?.status !== 'processing' && r
  })
  t.equal(row.status, 'analyzed', 'not re-judged and skipped by the worker')
  t.equal(row.skipReason, null)
})

t.test('an item failing alone is counted under its real cause', async (t) => {
  const fake = await startFakeModelServer({ partial: 1 })
  t.teardown(() => fake.close())
  // the first answer drops the last conversation; the call re-asking for it alone then fails
  fake.events.once('answer', () => fake.setBehaviour({ failNext: 1 }))
  const app = await buildTestApp(t, {
    DATA_DIR: 'memory://',
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    MODEL_MAX_RETRIES: '0',
    MAX_ATTEMPTS: '1', // one failure makes a dead letter: nothing retries while we look
    WORKER_ENABLED: 'false'
  })
  const res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload: { conversations: [conversation(), conversation()] } })
  const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
  await app.pipeline.worker.start()
  // which conversation the answer drops depends on the order of the claim: either may
  const [failed, other] = await waitFor(async () => {
    const rows = await Promise.all(ids.map((id) => app.repos.conversations.getById(id)))
    const dead = rows.find((r) => r?.status === 'failed')
    return dead && rows.every((r) => r?.status === 'failed' || r?.status === 'analyzed') && [dead, rows.find((r) => r !== dead)!]
  })
  t.match(failed!.lastError, /model endpoint answered 500/)
  t.equal(other?.status, 'analyzed', 'the rest of the batch went through')
  const metric = await app.metrics.analysisFailures.get()
  t.same(
    Object.fromEntries(metric.values.map((v) => [v.labels.reason, v.value])),
    { error: 1, dead_letter: 1 },
    'counted as the failed call it was, not as invalid output'
  )
})

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const twoApps = backend === 'pglite' ? 'two apps on one database need PostgreSQL (a PGlite folder is one process)' : false
    t.test("a crashed instance's expired claims are reclaimed and analysed", { skip: twoApps }, async (t) => {
      const env = await backendEnv(t, backend)
      const producer = await buildTestApp(t, { ...env, WORKER_ENABLED: 'false' })
      const res = await producer.inject({
        method: 'POST',
        url: '/api/v1/conversations/batch',
        payload: { conversations: Array.from({ length: 5 }, () => conversation()) }
      })
      const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
      // as a crashed instance leaves them: processing, its lease run out, one attempt spent
      await producer.database.query(sql`
        UPDATE conversation_queue SET state = 'processing', lease_owner = 'crashed-1', attempts = 1,
          lease_expires_at = now() - interval '1 second'`)
      const worker = await buildTestApp(t, env)
      await waitFor(async () => (await worker.repos.insights.getMany(ids)).length === 5, { what: 'reclaimed and analysed' })
      for (const id of ids) {
        const row = await worker.repos.conversations.getById(id)
        t.equal(row?.status, 'analyzed')
        t.equal(row?.attempts, 2, 'the reclaim counted as a new attempt')
      }
    })

    t.test('a claim that expired on its last attempt becomes a dead letter', async (t) => {
      const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false', MAX_ATTEMPTS: '3' })
      const { id } = (await app.inject({ method: 'POST', url: '/api/v1/conversations', payload: conversation() })).json()
      await app.database.query(sql`
        UPDATE conversation_queue SET state = 'processing', lease_owner = 'crashed-2', attempts = 3,
          lease_expires_at = now() - interval '1 second' WHERE conversation_id = ${id}`)
      await app.pipeline.worker.sweep()
      const row = await app.repos.conversations.getById(id)
      t.equal(row?.status, 'failed')
      t.match(row?.lastError, /lease expired/)
    })

    t.test('identical texts in one batch are analysed once, the rest served as cached', async (t) => {
      const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false' })
      const messages = [{ role: 'user', content: 'Where is my parcel? The tracking page has not changed for ten days.' }]
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/conversations/batch',
        payload: { conversations: Array.from({ length: 4 }, () => conversation({ messages })) }
      })
      const ids: string[] = res.json().results.map((r: { id: string }) => r.id)
      await app.pipeline.worker.start()
      await waitFor(async () => (await app.repos.insights.getMany(ids)).length === 4, { what: 'four insights' })
      const insights = await app.repos.insights.getMany(ids)
      t.equal(insights.filter((i) => !i.cached).length, 1, 'one analysed')
      t.equal(insights.filter((i) => i.cached).length, 3, 'three from the cache')
    })
  })
}

t.test('start-up does not wait for the backlog count, and the figures arrive when it ends', async (t) => {
  // the count of a 20M-row database, held open until the test lets it finish
  let finishCount: () => void = () => {}
  const countHeld = new Promise<void>((resolve) => {
    finishCount = resolve
  })
  let counts = 0
  // an open circuit keeps the rows pending, so the count has a known answer
  const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 3_600_000, now: () => 0 })
  breaker.recordFailure()
  const { worker, pending } = await handBuiltWorker(t, {
    breaker,
    conversations: (real) => ({
      ...real,
      async backlogCounts() {
        counts++
        await countHeld
        return real.backlogCounts()
      }
    })
  })
  await pending(texts(3, 'backlog'))
  await worker.start()
  t.equal(counts, 1, 'the first count was started')
  t.same(worker.status().backlog, { pending: 0, processing: 0, failed: 0 }, 'start returned before the count ended')
  await worker.sweep()
  t.equal(counts, 1, 'a sweep while a count is in flight does not start a second one')
  finishCount()
  await worker.refreshBacklog()
  t.same(worker.status().backlog, { pending: 3, processing: 0, failed: 0 }, 'the figures of the finished count')
})
