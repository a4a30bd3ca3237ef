// The worker: claims batches (leases in the database), and runs the stages in order:
// prefilter → cache → analyze → store. It owns the pacing (adaptive batch size), the
// circuit breaker and the budget gate; each stage is its own small module.
import { EventEmitter } from 'node:events'
import PQueue from 'p-queue'
import type { Logger } from 'pino'
import { type AnalysisInput, type Analyzer, type BatchResult, type ItemResult, ModelCallError } from '../analyzers/analyzer.ts'
import type { Config } from '../config.ts'
import type { ClaimedConversation, ConversationsRepository } from '../db/conversations.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import type { InsightsRepository, NewInsight } from '../db/insights.ts'
import type { UsageRepository } from '../db/usage.ts'
import type { BacklogStatus, InsightFields } from '../domain.ts'
import type { Metrics } from '../metrics.ts'
import type { AdaptiveBatchSize } from './batch-size.ts'
import type { CircuitBreaker } from './breaker.ts'
import type { DailyBudget } from './budget.ts'
import type { AnalysisCache } from './cache.ts'
import { cacheKey } from './normalize.ts'
import { type PrefilterOptions, prefilter } from './prefilter.ts'
import type { WorkQueue } from './queue.ts'

export interface WorkerDeps {
  config: Config
  conversations: ConversationsRepository
  insights: InsightsRepository
  usage: UsageRepository
  queue: WorkQueue
  cache: AnalysisCache
  analyzer: Analyzer
  breaker: CircuitBreaker
  batchSize: AdaptiveBatchSize
  budget: DailyBudget
  prefilter: PrefilterOptions
  metrics: Metrics
  logger: Logger
}

// hourly is plenty: an expired row is already ignored by look-ups, only its space waits
const CACHE_PURGE_EVERY_MS = 3_600_000

export const PAUSE_REASONS = ['circuit_open', 'budget_exhausted', 'database_unavailable'] as const
export type PauseReason = (typeof PAUSE_REASONS)[number]

export interface WorkerStatus {
  running: boolean
  paused: PauseReason | null
  stuck: boolean
  last_progress_at: string
  backlog: Record<BacklogStatus, number>
}

/** Emits 'stored' with the ids of insights this process stored (the live stream listens). */
export class Worker extends EventEmitter {
  private running = false
  private loopDone: Promise<void> = Promise.resolve()
  private loopAlive = false
  private readonly batches: PQueue
  private readonly abort = new AbortController()
  private sweepTimer: NodeJS.Timeout | undefined
  private sweepTicks = 0
  private lastCachePurgeAt = Date.now()
  private lastProgressAt = Date.now()
  private batchSeq = 0
  private backlog: Record<BacklogStatus, number> = { pending: 0, processing: 0, failed: 0 }
  private pausedFor: PauseReason | null = null
  private readonly owner: string
  private readonly log: Logger

  constructor(private readonly d: WorkerDeps) {
    super()
    this.owner = d.config.INSTANCE_ID
    this.log = d.logger.child({ module: 'worker' })
    this.batches = new PQueue({ concurrency: d.config.WORKER_CONCURRENCY })
    d.metrics.batchSize.set(d.batchSize.size)
  }

  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    await this.sweep().catch((err) => this.log.warn({ err }, 'first sweep failed'))
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err) => this.log.warn({ err: { message: (err as Error).message } }, 'sweep failed'))
    }, this.d.config.SWEEP_INTERVAL_MS)
    this.sweepTimer.unref()
    this.loopAlive = true
    this.loopDone = this.loop()
      .catch((err) => this.log.error({ err }, 'worker loop died'))
      .finally(() => {
        this.loopAlive = false
      })
  }

  /**
   * Stops taking work, lets in-flight batches finish for up to SHUTDOWN_TIMEOUT_MS, aborts
   * what is left, and hands every claim this instance still holds back to pending, so
   * another instance (or the next start) takes it at once instead of after the lease.
   */
  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.sweepTimer)
    this.d.queue.wake()
    await this.loopDone
    const idle = this.batches.onIdle()
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), this.d.config.SHUTDOWN_TIMEOUT_MS).unref())
    ])
    if (timedOut) {
      this.log.warn({ in_flight: this.batches.pending }, 'shutdown timeout: aborting in-flight batches')
      this.abort.abort(new Error('shutting down'))
      await Promise.race([idle, new Promise((r) => setTimeout(r, 1_000).unref())])
    }
    try {
      const released = await this.d.conversations.releaseClaims('all', this.owner)
      if (released) this.log.info({ released }, 'released unfinished claims')
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'could not release claims; their leases will expire')
    }
  }

  /** Pending rows in the shared database as of the last sweep: cheap enough for every ingest. */
  get pendingBacklog(): number {
    return this.backlog.pending
  }

  status(): WorkerStatus {
    // work is waiting: queued here, pending in the database, or a batch of ours in flight
    const waiting = this.d.queue.size > 0 || this.backlog.pending > 0 || this.batches.pending > 0
    const idleFor = Date.now() - this.lastProgressAt
    return {
      running: this.running && this.loopAlive,
      paused: this.pausedFor,
      stuck:
        this.running &&
        (!this.loopAlive || (this.pausedFor === null && waiting && idleFor > this.d.config.STUCK_AFTER_SECONDS * 1000)),
      last_progress_at: new Date(this.lastProgressAt).toISOString(),
      backlog: { ...this.backlog }
    }
  }

  /** Reclaims expired leases, refreshes the shared backlog and budget, flushes cache hits. */
  async sweep(): Promise<void> {
    const tick = this.sweepTicks++
    const { requeued, failed } = await this.d.conversations.reclaimExpired(this.d.config.MAX_ATTEMPTS)
    if (requeued || failed) this.log.warn({ requeued, failed }, 'reclaimed expired leases')
    if (requeued) this.d.queue.overflowed = true // they wait in the database, not in our queue
    // counting is the costly part at a deep backlog: every 5th tick is fresh enough for a gauge
    if (tick % 5 === 0) {
      this.backlog = await this.d.conversations.backlogCounts()
      for (const [status, n] of Object.entries(this.backlog)) this.d.metrics.backlog.set({ status }, n)
      if (this.d.analyzer.billable) await this.d.budget.refresh()
      if (this.backlog.pending > this.d.queue.size) this.d.queue.overflowed = true
    }
    const remaining = this.d.budget.remaining()
    if (remaining !== null) this.d.metrics.budgetRemaining.set(remaining)
    await this.d.cache.flushHits()
    // expired cache rows are never read again: delete them now and then, not on every tick
    if (Date.now() - this.lastCachePurgeAt > CACHE_PURGE_EVERY_MS) {
      this.lastCachePurgeAt = Date.now()
      const purged = await this.d.cache.purgeExpired()
      if (purged) this.log.info({ purged }, 'purged expired analysis cache rows')
    }
    this.d.queue.wake()
  }

  private setPaused(reason: PauseReason | null) {
    if (reason === this.pausedFor) return
    if (this.pausedFor) this.d.metrics.workerPaused.set({ reason: this.pausedFor }, 0)
    if (reason) this.d.metrics.workerPaused.set({ reason }, 1)
    this.log.info({ paused: reason, previous: this.pausedFor }, reason ? 'worker paused' : 'worker resumed')
    this.pausedFor = reason
  }

  private async loop(): Promise<void> {
    const { breaker, queue, budget, config } = this.d
    while (this.running) {
      if (breaker.state === 'open' && breaker.retryInMs() > 0) {
        this.setPaused('circuit_open')
        await queue.waitForWork(Math.min(breaker.retryInMs(), 1_000))
        continue
      }
      if (breaker.state === 'half_open') {
        // the probe batch is in flight; nothing else runs until it reports
        await queue.waitForWork(1_000) // every finished batch wakes the queue
        continue
      }
      if (this.d.analyzer.billable && budget.exhausted()) {
        this.setPaused('budget_exhausted')
        await queue.waitForWork(1_000)
        continue
      }
      if (this.batches.pending >= config.WORKER_CONCURRENCY) {
        await this.nextBatchDone()
        continue
      }
      let rows: ClaimedConversation[]
      try {
        rows = await this.claim(this.d.batchSize.size)
      } catch (err) {
        // back off and try again; nothing is lost, rows stay pending. An unreachable database
        // is a pause, not a wedge: restarting this process would not bring it back
        if (isDatabaseUnavailable(err)) {
          this.setPaused('database_unavailable')
          this.lastProgressAt = Date.now()
        } else {
          this.log.warn({ err: { message: (err as Error).message } }, 'claim failed')
        }
        await queue.waitForWork(1_000)
        continue
      }
      this.setPaused(null)
      if (rows.length === 0) {
        // idle is not stuck, but a batch of ours still in flight is not idle: a hung call
        // must not be hidden by an empty queue
        if (this.batches.pending === 0) this.lastProgressAt = Date.now()
        await queue.waitForWork(config.SWEEP_INTERVAL_MS)
        continue
      }
      // canRun() lets an open circuit whose cooldown is over run one probe batch: this one
      const probe = breaker.state === 'open'
      if (!breaker.canRun()) {
        await this.d.conversations.releaseClaims(
          rows.map((r) => r.id),
          this.owner
        )
        continue
      }
      const batchId = ++this.batchSeq
      this.batches.add(() => this.processBatch(batchId, rows, probe)).catch(() => {})
    }
  }

  private nextBatchDone(): Promise<void> {
    return new Promise((resolve) => this.batches.once('next', () => resolve()))
  }

  private async claim(n: number): Promise<ClaimedConversation[]> {
    const { queue, conversations, config } = this.d
    const rows: ClaimedConversation[] = []
    if (queue.size > 0) {
      rows.push(...(await conversations.claimByIds(queue.take(n), this.owner, config.LEASE_SECONDS)))
    }
    // The database is the truth: top up from its oldest pending rows (overflow, other
    // instances' leftovers, back-off expiries, pending rows from before a restart).
    if (rows.length < n && (queue.overflowed || queue.size === 0)) {
      const more = await conversations.claimOldest(n - rows.length, this.owner, config.LEASE_SECONDS)
      if (more.length < n - rows.length) queue.overflowed = false
      rows.push(...more)
    }
    this.d.metrics.queueDepth.set(queue.size)
    return rows
  }

  private async processBatch(batchId: number, rows: ClaimedConversation[], probe = false): Promise<void> {
    const { analyzer, metrics, breaker, batchSize, config } = this.d
    const log = this.log.child({ batch_id: batchId })
    const started = performance.now()
    let toAnalyze: ClaimedConversation[] = []
    let breakerTold = false
    try {
      // 1. prefilter
      const skipped: { id: string; reason: string }[] = []
      const kept: ClaimedConversation[] = []
      for (const r of rows) {
        const verdict = prefilter(r.messages, this.d.prefilter)
        if (verdict.skip) skipped.push({ id: r.id, reason: verdict.reason })
        else kept.push(r)
      }
      if (skipped.length) {
        await this.d.conversations.markSkipped(skipped, this.owner)
        for (const s of skipped) metrics.prefilterSkips.inc({ reason: s.reason })
      }

      // 2. cache (and identical texts within the batch are analysed once)
      const keyOf = new Map(kept.map((r) => [r.id, cacheKey(r.textHash, analyzer.model, analyzer.promptVersion)]))
      const hits = await this.d.cache.lookup([...keyOf.values()])
      const firstByKey = new Map<string, ClaimedConversation>()
      const followers: ClaimedConversation[] = []
      for (const r of kept) {
        const key = keyOf.get(r.id)!
        if (hits.has(key)) continue
        if (firstByKey.has(key)) followers.push(r)
        else firstByKey.set(key, r)
      }
      toAnalyze = [...firstByKey.values()]
      metrics.cacheRequests.inc({ result: 'hit' }, kept.length - toAnalyze.length)
      metrics.cacheRequests.inc({ result: 'miss' }, toAnalyze.length)

      // 3. analyze
      let results: ItemResult[] = []
      if (toAnalyze.length) {
        const t0 = performance.now()
        const inputs: AnalysisInput[] = toAnalyze.map((r) => ({ id: r.id, source: r.source, messages: r.messages }))
        const batch = await analyzer.analyzeBatch(inputs, this.abort.signal)
        const latencyMs = performance.now() - t0
        breaker.recordSuccess()
        breakerTold = true
        batchSize.onSuccess({ latencyMs, backlog: this.backlog.pending + this.d.queue.size })
        metrics.batchSize.set(batchSize.size)
        results = batch.results
        await this.bookUsage(batch.usage)
      }

      // 4. store
      const byId = new Map(results.map((res) => [res.id, res]))
      const fresh = new Map<string, InsightFields>() // cache key → insight analysed now
      const toStore: NewInsight[] = []
      const failures: { row: ClaimedConversation; error: string; retryable: boolean }[] = []
      const make = (r: ClaimedConversation, f: InsightFields, cached: boolean, res?: ItemResult): NewInsight => ({
        ...f,
        conversationId: r.id,
        source: r.source,
        model: analyzer.model,
        promptVersion: analyzer.promptVersion,
        cached,
        inputTokens: res?.ok ? res.tokens.input : 0,
        outputTokens: res?.ok ? res.tokens.output : 0,
        costUsd: res?.ok ? res.cost_usd : 0
      })
      for (const r of toAnalyze) {
        const res = byId.get(r.id)
        if (res?.ok) {
          toStore.push(make(r, res.insight, false, res))
          fresh.set(keyOf.get(r.id)!, res.insight)
        } else {
          failures.push({ row: r, error: res ? (res as { error: string }).error : 'no result for item', retryable: res ? !res.ok && res.retryable : true })
        }
      }
      for (const r of kept) {
        const key = keyOf.get(r.id)!
        const hit = hits.get(key)
        if (hit) toStore.push(make(r, hit, true))
      }
      for (const r of followers) {
        const f = fresh.get(keyOf.get(r.id)!)
        if (f) toStore.push(make(r, f, true))
        else failures.push({ row: r, error: 'identical conversation failed analysis', retryable: true })
      }
      const { stored } = await this.d.insights.storeMany(toStore, this.owner)
      await this.d.cache
        .store([...fresh].map(([key, insight]) => ({ key, model: analyzer.model, promptVersion: analyzer.promptVersion, insight })))
        .catch((err) => log.warn({ err: { message: (err as Error).message } }, 'cache write failed'))

      const storedSet = new Set(stored)
      const now = Date.now()
      const receivedAt = new Map(rows.map((r) => [r.id, r.receivedAt]))
      for (const i of toStore) {
        if (!storedSet.has(i.conversationId)) continue
        metrics.insightsStored.inc({ model: i.model, cached: String(i.cached) })
        metrics.insightLatency.observe((now - receivedAt.get(i.conversationId)!.getTime()) / 1000)
      }
      if (failures.length) {
        metrics.analysisFailures.inc({ reason: 'invalid_output' }, failures.length)
        const errorOf = new Map(failures.map((f) => [f.row.id, f.error]))
        await this.releaseFailed(
          failures.map((f) => f.row),
          (id) => errorOf.get(id)!
        )
      }
      if (stored.length) this.emit('stored', stored)
      log.debug(
        {
          size: rows.length,
          skipped: skipped.length,
          cache_hits: kept.length - toAnalyze.length,
          analysed: toAnalyze.length,
          stored: stored.length,
          failed: failures.length,
          latency_ms: Math.round(performance.now() - started)
        },
        'batch done'
      )
    } catch (err) {
      if (err instanceof ModelCallError) {
        breaker.recordFailure()
        breakerTold = true
        // the calls made before the failure were spent all the same
        await this.bookUsage(err.usage).catch((e) =>
          log.warn({ err: { message: (e as Error).message } }, 'could not record model usage')
        )
        if (err.kind !== 'rejected') batchSize.onFailure(err.kind)
        metrics.batchSize.set(batchSize.size)
        metrics.analysisFailures.inc({ reason: err.kind })
        log.warn({ kind: err.kind, err: { message: err.message }, size: rows.length }, 'model call failed')
        if (err.kind === 'rejected') {
          // the model refused this input: it counts against these conversations' attempts
          await this.releaseFailed(rows, () => err.message).catch((e) => this.logReleaseError(log, e))
        } else {
          // an outage is not the conversations' fault: give them back without using an attempt
          await this.d.conversations
            .releaseClaims(
              rows.map((r) => r.id),
              this.owner,
              Math.min(err.retryAfterMs ?? config.RETRY_BASE_MS, 60_000)
            )
            .catch((e) => this.logReleaseError(log, e))
        }
      } else if (this.abort.signal.aborted) {
        // shutdown cut this batch short: not the conversations' fault, no attempt used
        metrics.analysisFailures.inc({ reason: 'shutdown' })
        await this.d.conversations
          .releaseClaims(
            rows.map((r) => r.id),
            this.owner
          )
          .catch((e) => this.logReleaseError(log, e))
      } else if (isDatabaseUnavailable(err)) {
        // like a model outage, a database outage is not these conversations' fault: hand them
        // back without using an attempt (if the database is still down, their leases expire)
        metrics.analysisFailures.inc({ reason: 'database_unavailable' })
        log.warn({ err: { message: (err as Error).message }, size: rows.length }, 'database unavailable during a batch')
        await this.d.conversations
          .releaseClaims(
            rows.map((r) => r.id),
            this.owner,
            config.RETRY_BASE_MS
          )
          .catch((e) => this.logReleaseError(log, e))
      } else {
        metrics.analysisFailures.inc({ reason: 'internal' })
        log.error({ err }, 'batch failed')
        await this.releaseFailed(rows, (_id) => (err as Error).message ?? 'internal error').catch((e) =>
          this.logReleaseError(log, e)
        )
      }
    } finally {
      // A probe must report (breaker.ts's contract), or the circuit stays half-open and the
      // worker waits for ever. A probe that made no model call (all cache hits or skips, or a
      // database error before the call) learned nothing about the model: stay cautious and
      // open again for one cooldown; the next probe takes other rows.
      if (probe && !breakerTold) breaker.recordFailure()
      this.lastProgressAt = Date.now()
      this.d.metrics.queueDepth.set(this.d.queue.size)
      this.d.queue.wake() // a slot is free and the breaker may have changed: let the loop look
    }
  }

  /** Spend goes to the budget first (in memory, so the gate closes even if the write fails), then to the usage table. */
  private async bookUsage(usage: BatchResult['usage'] | undefined): Promise<void> {
    const { analyzer } = this.d
    if (!analyzer.billable || !usage || usage.calls === 0) return
    this.d.budget.add(usage.cost_usd)
    await this.d.usage.add(analyzer.model, {
      calls: usage.calls,
      input: usage.input,
      output: usage.output,
      costUsd: usage.cost_usd
    })
  }

  private logReleaseError(log: Logger, err: unknown) {
    log.warn({ err: { message: (err as Error).message } }, 'could not release rows; their leases will expire')
  }

  /** A failed attempt: back-off doubling per attempt, a dead letter after MAX_ATTEMPTS. */
  private async releaseFailed(rows: ClaimedConversation[], errorOf: (id: string) => string): Promise<void> {
    const { config } = this.d
    await this.d.conversations.releaseFailed(
      rows.map((r) => ({
        id: r.id,
        error: errorOf(r.id),
        final: r.attempts >= config.MAX_ATTEMPTS,
        delayMs: Math.min(config.RETRY_BASE_MS * 2 ** Math.max(0, r.attempts - 1), 3_600_000)
      })),
      this.owner
    )
    for (const r of rows) if (r.attempts >= config.MAX_ATTEMPTS) this.d.metrics.analysisFailures.inc({ reason: 'dead_letter' })
  }
}
