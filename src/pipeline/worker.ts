// The worker: claims batches (leases in the database) and composes the stages, each a
// module of its own with its own test: cache (look-up and in-batch dedup, cache.ts) →
// analyze (analyze.ts) → store (store.ts, group-committed by group-store.ts), with usage
// booking (usage-booking.ts) and the failure table (failures.ts). It owns the pacing
// (adaptive batch size), the circuit breaker and the budget gate.
//
// No prefilter here: ingest ran it and stored its verdict with the row (skipped rows are
// never pending, so never claimed). Judging again would contradict the status the producer
// was given, could flip with a configuration change between ingest and claim, and would
// cost the prefilter's regexes on every claimed row for nothing.
import { EventEmitter } from 'node:events'
import PQueue from 'p-queue'
import type { Logger } from 'pino'
import type { Analyzer, BatchResult, ItemResult } from '../analyzers/analyzer.ts'
import type { Config } from '../config.ts'
import type { ClaimedConversation, ConversationsRepository } from '../db/conversations.ts'
import { isDatabaseUnavailable } from '../db/errors.ts'
import type { InsightsRepository } from '../db/insights.ts'
import type { UsageRepository, UsageRow } from '../db/usage.ts'
import type { BacklogStatus } from '../domain.ts'
import type { Metrics } from '../metrics.ts'
import { analyzeLeaders } from './analyze.ts'
import type { AdaptiveBatchSize } from './batch-size.ts'
import type { CircuitBreaker } from './breaker.ts'
import type { DailyBudget } from './budget.ts'
import { type AnalysisCache, planFromCache } from './cache.ts'
import { type AnalysisFailureReason, classifyFailure, retryDelayMs } from './failures.ts'
import { batchesAllowed } from './fair-share.ts'
import { ClaimGroup, type ClaimMember, GROUP_MAX_INSIGHTS, GroupStore } from './group-store.ts'
import { cacheKey } from './normalize.ts'
import type { WorkQueue } from './queue.ts'
import { assembleOutcome, type ItemFailure } from './store.ts'
import { bookUsage, chargeUsage } from './usage-booking.ts'

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
  metrics: Metrics
  logger: Logger
  /**
   * Only this process can open the database (PGlite: its folder is locked), so every claim
   * found at start is a dead process's and is taken back at once, not after its lease.
   */
  exclusiveDatabase?: boolean
  /** the event loop's recent lateness in ms (fair-share.ts); unset: never late */
  loopLagMs?: () => number
}

/**
 * Leases are renewed at a third of LEASE_SECONDS: two renewals in a row can fail (a database
 * blip) before a live batch loses its claims, and a dead instance's claims come back within
 * one lease.
 */
const LEASE_RENEWALS_PER_LEASE = 3

// hourly is plenty: an expired row is already ignored by look-ups, only its space waits
const CACHE_PURGE_EVERY_MS = 3_600_000
/**
 * Counting the backlog is the costly part of a sweep at a deep backlog: every 5th tick (5 s
 * at the default SWEEP_INTERVAL_MS) is fresh enough for a gauge, /health and the ingest limit.
 */
const BACKLOG_COUNT_EVERY_TICKS = 5
/**
 * How often a paused loop (open circuit, spent budget, unreachable database, half-open
 * probe in flight) looks again when nothing wakes it sooner: a second is cheap (no query
 * while the circuit is open) and resumes work within a second of the cause going away.
 */
const PAUSED_RECHECK_MS = 1_000
/** Rows one claim takes at most when several slots are free (a single batch may be larger). */
const CLAIM_MAX_ROWS = GROUP_MAX_INSIGHTS
/** After an unexpected failure of a loop step: long enough not to spin on a persistent fault. */
const LOOP_FAILURE_BACKOFF_MS = 1_000
/** After shutdown aborts the batches still running, how long it waits for them to hand their rows back. */
const ABORT_GRACE_MS = 1_000

export const PAUSE_REASONS = ['circuit_open', 'budget_exhausted', 'database_unavailable'] as const
export type PauseReason = (typeof PAUSE_REASONS)[number]

export interface WorkerStatus {
  running: boolean
  paused: PauseReason | null
  stuck: boolean
  last_progress_at: string
  backlog: Record<BacklogStatus, number>
  /** this instance's claims: in batches (leases renewed), or stranded by a failed release (retried) */
  claims: { in_flight: number; stranded: number }
}

/** A release that failed (the database was away): kept and tried again by every sweep. */
type StrandedRelease = { kind: 'claims'; ids: string[]; delayMs: number } | { kind: 'failed'; failures: ItemFailure[] }

/** Emits 'stored' with the ids of insights this process stored (live streams hear of them by NOTIFY, from the store statement). */
export class Worker extends EventEmitter {
  private running = false
  private loopDone: Promise<void> = Promise.resolve()
  private loopAlive = false
  private readonly batches: PQueue
  /** Aborts the batches still running when shutdown times out; a new one for every start. */
  private abort = new AbortController()
  /** Aborted when stop() begins; a new one for every start. */
  private stopping = new AbortController()
  private sweepTimer: NodeJS.Timeout | undefined
  private renewTimer: NodeJS.Timeout | undefined
  /**
   * The claimed ids of each batch in flight: what the heartbeat renews. `finishing` once it
   * stores or hands back its rows: a renewal that no longer finds them then sees them
   * stored or released, not lost.
   */
  private readonly inFlight = new Map<number, { ids: string[]; finishing: boolean }>()
  private stranded: StrandedRelease[] = []
  private sweepTicks = 0
  private lastCachePurgeAt = Date.now()
  private lastProgressAt = Date.now()
  private batchSeq = 0
  private backlog: Record<BacklogStatus, number> = { pending: 0, processing: 0, failed: 0 }
  private backlogRefresh: Promise<void> | undefined
  private pausedFor: PauseReason | null = null
  private readonly owner: string
  private readonly log: Logger
  private readonly stores: GroupStore
  /** Every batch not yet done, its slot freed or not: what shutdown waits for. */
  private readonly finishing = new Set<Promise<void>>()

  constructor(private readonly d: WorkerDeps) {
    super()
    this.owner = d.config.INSTANCE_ID
    this.log = d.logger.child({ module: 'worker' })
    this.batches = new PQueue({ concurrency: d.config.WORKER_CONCURRENCY })
    this.stores = new GroupStore({ insights: d.insights, cache: d.cache, usage: d.usage }, this.owner, {
      observe: (batches, seconds) => {
        d.metrics.storeBatches.observe(batches)
        d.metrics.storeDuration.observe(seconds)
      }
    })
    d.metrics.batchSize.set(d.batchSize.size)
  }

  async start(): Promise<void> {
    if (this.running) return
    this.running = true
    this.stopping = new AbortController()
    this.abort = new AbortController()
    this.stores.resume()
    if (this.d.exclusiveDatabase) await this.takeBackDeadClaims().catch((err) => this.log.warn({ err: { message: (err as Error).message } }, 'could not take back claims at start'))
    await this.sweep().catch((err) => this.log.warn({ err }, 'first sweep failed'))
    this.renewTimer = setInterval(() => void this.renewLeases(), (this.d.config.LEASE_SECONDS * 1000) / LEASE_RENEWALS_PER_LEASE)
    this.renewTimer.unref()
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
    this.stopping.abort()
    await this.loopDone
    const idle = this.batches.onIdle().then(() => Promise.all(this.finishing))
    const timedOut = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), this.d.config.SHUTDOWN_TIMEOUT_MS).unref())
    ])
    if (timedOut) {
      this.log.warn({ in_flight: this.finishing.size }, 'shutdown timeout: aborting in-flight batches')
      this.abort.abort(new Error('shutting down'))
      // batches waiting for the store hand their rows back too, not write after the release
      this.stores.abort(new Error('shutting down'))
      await Promise.race([idle, new Promise((r) => setTimeout(r, ABORT_GRACE_MS).unref())])
    }
    clearInterval(this.renewTimer) // no batch is left to renew; release takes back everything
    await this.backlogRefresh // a count in flight must not outlive the pool it runs on
    try {
      const released = await this.d.conversations.releaseClaims('all', this.owner)
      this.stranded = [] // 'all' covered them
      this.reportClaims()
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
    const waiting = this.d.queue.size > 0 || this.backlog.pending > 0 || this.finishing.size > 0
    const idleFor = Date.now() - this.lastProgressAt
    return {
      running: this.running && this.loopAlive,
      paused: this.pausedFor,
      stuck:
        this.running &&
        (!this.loopAlive || (this.pausedFor === null && waiting && idleFor > this.d.config.STUCK_AFTER_SECONDS * 1000)),
      last_progress_at: new Date(this.lastProgressAt).toISOString(),
      backlog: { ...this.backlog },
      claims: this.claimCounts()
    }
  }

  private claimCounts() {
    let inFlight = 0
    for (const b of this.inFlight.values()) inFlight += b.ids.length
    let stranded = 0
    for (const r of this.stranded) stranded += r.kind === 'claims' ? r.ids.length : r.failures.length
    return { in_flight: inFlight, stranded }
  }

  private reportClaims() {
    const c = this.claimCounts()
    this.d.metrics.claimsHeld.set({ state: 'in_flight' }, c.in_flight)
    this.d.metrics.claimsHeld.set({ state: 'stranded' }, c.stranded)
  }

  /** The heartbeat: leases of every batch in flight run a whole LEASE_SECONDS from now again. */
  private async renewLeases(): Promise<void> {
    const batches = [...this.inFlight.values()]
    const ids = batches.flatMap((b) => b.ids)
    if (ids.length === 0) return
    try {
      const held = new Set(await this.d.conversations.renewLeases(ids, this.owner, this.d.config.LEASE_SECONDS))
      // rows of a batch finishing meanwhile are gone because they were stored or released
      const lost = batches.filter((b) => !b.finishing).flatMap((b) => b.ids.filter((id) => !held.has(id)))
      if (lost.length) {
        // renewed too late (this process stalled past a lease): another instance has them now
        this.d.metrics.leasesLost.inc(lost.length)
        this.log.warn({ lost: lost.length }, 'claims of batches in flight were reclaimed by another instance')
      }
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message }, claims: ids.length }, 'could not renew leases; retrying at the next beat')
    }
  }

  /** Every claim in an exclusive database is a dead process's: pending again now (attempt counted). */
  private async takeBackDeadClaims(): Promise<void> {
    let total = 0
    for (;;) {
      const { requeued, failed } = await this.d.conversations.reclaimExpired(this.d.config.MAX_ATTEMPTS, { all: true })
      total += requeued + failed
      if (requeued + failed === 0) break
    }
    if (total) this.log.warn({ reclaimed: total }, 'took back the claims of a process that stopped without releasing them')
  }

  /** Retries the releases that failed while the database was away, oldest first. */
  private async retryStranded(): Promise<void> {
    while (this.stranded.length) {
      const r = this.stranded[0]!
      if (r.kind === 'claims') await this.d.conversations.releaseClaims(r.ids, this.owner, r.delayMs)
      else await this.releaseFailed(r.failures)
      this.stranded.shift()
      this.reportClaims()
      this.log.info({ released: r.kind === 'claims' ? r.ids.length : r.failures.length }, 'released claims stranded by a database outage')
    }
  }

  private strand(release: StrandedRelease) {
    this.stranded.push(release)
    this.reportClaims()
  }

  /** Reclaims expired leases, refreshes the shared backlog and budget, flushes cache hits. */
  async sweep(): Promise<void> {
    const tick = this.sweepTicks++
    // before anything else: these rows sit claimed and idle until released
    if (this.stranded.length) await this.retryStranded()
    const { requeued, failed } = await this.d.conversations.reclaimExpired(this.d.config.MAX_ATTEMPTS)
    if (requeued || failed) this.log.warn({ requeued, failed }, 'reclaimed expired leases')
    if (requeued) this.d.queue.overflowed = true // they wait in the database, not in our queue
    if (tick % BACKLOG_COUNT_EVERY_TICKS === 0) {
      this.refreshBacklog()
      if (this.d.analyzer.billable) await this.d.budget.refresh()
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

  /**
   * Counts the backlog in the background, one count at a time: start-up and the sweep
   * (lease reclaims) never wait on it, so a slow count on a huge database delays only the
   * figures, not the service. Resolves when the count in flight (or a new one) is done.
   */
  refreshBacklog(): Promise<void> {
    this.backlogRefresh ??= this.d.conversations
      .backlogCounts()
      .then((backlog) => {
        this.backlog = backlog
        for (const [status, n] of Object.entries(backlog)) this.d.metrics.backlog.set({ status }, n)
        if (backlog.pending > this.d.queue.size) this.d.queue.overflowed = true
        this.d.queue.wake()
      })
      .catch((err) => this.log.warn({ err: { message: (err as Error).message } }, 'backlog count failed'))
      .finally(() => {
        this.backlogRefresh = undefined
      })
    return this.backlogRefresh
  }

  private setPaused(reason: PauseReason | null) {
    if (reason === this.pausedFor) return
    if (this.pausedFor) this.d.metrics.workerPaused.set({ reason: this.pausedFor }, 0)
    if (reason) this.d.metrics.workerPaused.set({ reason }, 1)
    this.log.info({ paused: reason, previous: this.pausedFor }, reason ? 'worker paused' : 'worker resumed')
    this.pausedFor = reason
  }

  /**
   * One step after another until stopped. A step that throws (a database error while handing
   * claims back, a bug) is logged and the loop goes on after a pause: the loop is the only
   * thing that takes work, so it must outlive any single failure.
   */
  private async loop(): Promise<void> {
    while (this.running) {
      try {
        await this.step()
      } catch (err) {
        this.log.error({ err }, 'worker loop step failed; going on')
        await this.d.queue.waitForWork(LOOP_FAILURE_BACKOFF_MS)
      }
    }
  }

  /** Waits while paused or full, else claims one batch and hands it to a slot. */
  private async step(): Promise<void> {
    const { breaker, queue, budget, config } = this.d
    if (breaker.state === 'open' && breaker.retryInMs() > 0) {
      this.setPaused('circuit_open')
      await queue.waitForWork(Math.min(breaker.retryInMs(), PAUSED_RECHECK_MS))
      return
    }
    if (breaker.state === 'half_open') {
      // the probe batch is in flight; nothing else runs until it reports
      await queue.waitForWork(PAUSED_RECHECK_MS) // every finished batch wakes the queue
      return
    }
    if (this.d.analyzer.billable && budget.exhausted()) {
      this.setPaused('budget_exhausted')
      await queue.waitForWork(PAUSED_RECHECK_MS)
      return
    }
    const allowed = batchesAllowed(config.WORKER_CONCURRENCY, this.d.loopLagMs?.() ?? 0, config.INGEST_LAG_BUDGET_MS)
    this.d.metrics.workerConcurrency.set(allowed)
    if (this.batches.pending >= allowed) {
      await this.nextBatchDone()
      return
    }
    // one claim for every free slot, split into batches: slots free together when their
    // batches' stores finish together (group-store.ts), and one statement of 160 rows costs
    // PostgreSQL far less than eight of 20 (a plan, a commit and a round trip each). An open
    // circuit's probe is one batch.
    const size = this.d.batchSize.size
    const slots = breaker.state === 'open' ? 1 : Math.max(1, Math.min(allowed - this.batches.pending, Math.floor(CLAIM_MAX_ROWS / size)))
    let rows: ClaimedConversation[]
    try {
      rows = await this.claim(size * slots)
    } catch (err) {
      // back off and try again; nothing is lost, rows stay pending. An unreachable database
      // is a pause, not a wedge: restarting this process would not bring it back
      if (isDatabaseUnavailable(err)) {
        this.setPaused('database_unavailable')
        this.lastProgressAt = Date.now()
      } else {
        this.log.warn({ err: { message: (err as Error).message } }, 'claim failed')
      }
      await queue.waitForWork(PAUSED_RECHECK_MS)
      return
    }
    this.setPaused(null)
    if (rows.length === 0) {
      // idle is not stuck, but a batch of ours still in flight is not idle: a hung call
      // must not be hidden by an empty queue
      if (this.finishing.size === 0) this.lastProgressAt = Date.now()
      await queue.waitForWork(config.SWEEP_INTERVAL_MS)
      return
    }
    // canRun() lets an open circuit whose cooldown is over run one probe batch: this one
    const probe = breaker.state === 'open'
    if (!breaker.canRun()) {
      // another batch opened the circuit while this one was being claimed: hand the rows
      // back unused. If that fails too, their leases expire and the sweep takes them back.
      const ids = rows.map((r) => r.id)
      await this.d.conversations.releaseClaims(ids, this.owner).catch((err) => {
        this.logReleaseError(this.log, err)
        this.strand({ kind: 'claims', ids, delayMs: 0 })
      })
      return
    }
    if (probe && rows.length > size) {
      // the circuit opened while a claim for several slots was in flight: probe with one batch
      const extra = rows.splice(size).map((r) => r.id)
      await this.d.conversations.releaseClaims(extra, this.owner).catch((err) => {
        this.logReleaseError(this.log, err)
        this.strand({ kind: 'claims', ids: extra, delayMs: 0 })
      })
    }
    const group = new ClaimGroup(Math.ceil(rows.length / size))
    for (let i = 0; i < rows.length; i += size) {
      const batch = rows.slice(i, i + size)
      const batchId = ++this.batchSeq
      const member = group.member()
      // the slot is the batch's until its store statement is sent (or it fails); the batch
      // itself runs on, tracked in `finishing`, until its rows are stored or handed back
      // the job only waits for slotFree, so it never rejects
      void this.batches.add(
        () =>
          new Promise<void>((slotFree) => {
            const run = this.processBatch(batchId, batch, probe, member, slotFree)
              // processBatch handles its own failures; this is a bug in that handling, and
              // it must neither crash the process nor fail shutdown's wait for the batches
              .catch((err) => this.log.error({ err, batch_id: batchId }, 'batch crashed'))
              .finally(() => {
                slotFree()
                this.finishing.delete(run)
              })
            this.finishing.add(run)
          })
      )
    }
  }

  /**
   * Resolves a turn after a slot frees (the batches of one group free theirs together), or
   * when stop() begins: a loop parked here while every batch hangs on its model call must
   * still end, or shutdown would never reach its timeout and abort them.
   */
  private nextBatchDone(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.batches.off('next', done)
        this.stopping.signal.removeEventListener('abort', done)
        setImmediate(resolve)
      }
      this.batches.on('next', done)
      this.stopping.signal.addEventListener('abort', done)
    })
  }

  private async claim(n: number): Promise<ClaimedConversation[]> {
    const { queue, conversations, config } = this.d
    const rows: ClaimedConversation[] = []
    const timed = async <T>(kind: 'ids' | 'oldest', fn: () => Promise<T>): Promise<T> => {
      const end = this.d.metrics.claimDuration.startTimer({ kind })
      try {
        return await fn()
      } finally {
        end()
      }
    }
    if (queue.size > 0) {
      rows.push(...(await timed('ids', () => conversations.claimByIds(queue.take(n), this.owner, config.LEASE_SECONDS))))
    }
    // The database is the truth: top up from its oldest pending rows (overflow, other
    // instances' leftovers, back-off expiries, pending rows from before a restart).
    if (rows.length < n && (queue.overflowed || queue.size === 0)) {
      const more = await timed('oldest', () => conversations.claimOldest(n - rows.length, this.owner, config.LEASE_SECONDS))
      if (more.length < n - rows.length) queue.overflowed = false
      rows.push(...more)
    }
    this.d.metrics.queueDepth.set(queue.size)
    return rows
  }

  /** The stages in order; any throw goes to the failure table. */
  private async processBatch(
    batchId: number,
    rows: ClaimedConversation[],
    probe: boolean,
    siblings: ClaimMember,
    slotFree: () => void
  ): Promise<void> {
    const { analyzer, metrics, breaker, batchSize } = this.d
    const log = this.log.child({ batch_id: batchId })
    const started = performance.now()
    let breakerTold = false
    // charged to the budget, to be booked with the store statement
    let unbooked: UsageRow[] = []
    const flight = { ids: rows.map((r) => r.id), finishing: false }
    this.inFlight.set(batchId, flight)
    this.reportClaims()
    try {
      const routeOf = (id: string) => analyzer.routeOf?.(id) ?? analyzer
      const plan = await planFromCache(this.d.cache, rows, (r) => {
        const route = routeOf(r.id)
        return cacheKey(r.textHash, route.model, route.promptVersion)
      })
      metrics.cacheRequests.inc({ result: 'hit' }, rows.length - plan.leaders.length)
      metrics.cacheRequests.inc({ result: 'miss' }, plan.leaders.length)

      let results = new Map<string, ItemResult>()
      if (plan.leaders.length) {
        const analysis = await analyzeLeaders(analyzer, plan.leaders, this.abort.signal)
        breaker.recordSuccess()
        breakerTold = true
        batchSize.onSuccess({ latencyMs: analysis.latencyMs, backlog: this.backlog.pending + this.d.queue.size })
        metrics.batchSize.set(batchSize.size)
        results = analysis.results
        unbooked = chargeUsage(this.d, analysis.usage)
      }

      const outcome = assembleOutcome(plan, results, analyzer)
      await siblings.arriveAndWait()
      const stored = await this.stores.store(outcome, unbooked, () => {
        // from here its rows may be stored at any moment: a renewal that misses them is no loss
        flight.finishing = true
        slotFree()
      })
      unbooked = []
      this.countStored(rows, outcome.insights, stored)
      if (outcome.failures.length) await this.releaseItemFailures(outcome.failures)
      if (stored.length) this.emit('stored', stored)
      log.debug(
        {
          size: rows.length,
          cache_hits: rows.length - plan.leaders.length,
          analysed: plan.leaders.length,
          stored: stored.length,
          failed: outcome.failures.length,
          latency_ms: Math.round(performance.now() - started)
        },
        'batch done'
      )
    } catch (err) {
      siblings.arrive() // a failed batch holds no sibling back
      flight.finishing = true
      // the store statement that would have booked the model's spend did not commit: book it apart
      await this.d.usage.addMany(unbooked).catch((e) => log.warn({ err: { message: (e as Error).message } }, 'could not record model usage'))
      breakerTold = (await this.handleBatchFailure(log, rows, err)) || breakerTold
    } finally {
      // A probe must report (breaker.ts's contract), or the circuit stays half-open and the
      // worker waits for ever. A probe that made no model call (all cache hits, or a
      // database error before the call) learned nothing about the model: stay cautious and
      // open again for one cooldown; the next probe takes other rows.
      if (probe && !breakerTold) breaker.recordFailure()
      this.inFlight.delete(batchId)
      this.reportClaims()
      this.lastProgressAt = Date.now()
      this.d.metrics.queueDepth.set(this.d.queue.size)
      this.d.queue.wake() // a slot is free and the breaker may have changed: let the loop look
    }
  }

  private countStored(rows: ClaimedConversation[], insights: { conversationId: string; model: string; cached: boolean }[], stored: string[]) {
    const storedSet = new Set(stored)
    const now = Date.now()
    const receivedAt = new Map(rows.map((r) => [r.id, r.receivedAt]))
    for (const i of insights) {
      if (!storedSet.has(i.conversationId)) continue
      this.d.metrics.insightsStored.inc({ model: i.model, cached: String(i.cached) })
      this.d.metrics.insightLatency.observe((now - receivedAt.get(i.conversationId)!.getTime()) / 1000)
    }
  }

  /** Applies classifyFailure's plan to a batch that threw; returns whether the breaker was told. */
  private async handleBatchFailure(log: Logger, rows: ClaimedConversation[], err: unknown): Promise<boolean> {
    const { breaker, batchSize, metrics, config } = this.d
    const plan = classifyFailure(err, { aborted: this.abort.signal.aborted, retryBaseMs: config.RETRY_BASE_MS })
    if (plan.breakerFailure) breaker.recordFailure()
    if (plan.shrinkBatch) batchSize.onFailure(plan.shrinkBatch)
    metrics.batchSize.set(batchSize.size)
    metrics.analysisFailures.inc({ reason: plan.reason })
    const message = (err as Error)?.message ?? String(err)
    if (plan.level === 'error') log.error({ err, reason: plan.reason, size: rows.length }, 'batch failed')
    else log.warn({ reason: plan.reason, err: { message }, size: rows.length }, 'batch failed')
    // the calls made before a model failure were spent all the same
    const spent = (err as { usage?: BatchResult['usage'] }).usage
    await bookUsage(this.d, spent).catch((e) => log.warn({ err: { message: (e as Error).message } }, 'could not record model usage'))
    const ids = rows.map((r) => r.id)
    const failures = rows.map((row) => ({ row, reason: plan.reason, error: message }))
    const release = plan.attemptUsed ? this.releaseFailed(failures) : this.d.conversations.releaseClaims(ids, this.owner, plan.releaseDelayMs)
    await Promise.resolve(release).catch((e) => {
      this.logReleaseError(log, e)
      this.strand(plan.attemptUsed ? { kind: 'failed', failures } : { kind: 'claims', ids, delayMs: plan.releaseDelayMs })
    })
    return plan.breakerFailure
  }

  private async releaseItemFailures(failures: ItemFailure[]): Promise<void> {
    const byReason = new Map<AnalysisFailureReason, number>()
    for (const f of failures) byReason.set(f.reason, (byReason.get(f.reason) ?? 0) + 1)
    for (const [reason, n] of byReason) this.d.metrics.analysisFailures.inc({ reason }, n)
    await this.releaseFailed(failures).catch((err) => {
      this.logReleaseError(this.log, err)
      this.strand({ kind: 'failed', failures })
    })
  }

  private logReleaseError(log: Logger, err: unknown) {
    log.warn({ err: { message: (err as Error).message } }, 'could not release rows; retrying every sweep (their leases expire meanwhile)')
  }

  /** A failed attempt: back-off doubling per attempt, a dead letter after MAX_ATTEMPTS. */
  private async releaseFailed(failures: ItemFailure[]): Promise<void> {
    const { config } = this.d
    await this.d.conversations.releaseFailed(
      failures.map(({ row, error }) => ({
        id: row.id,
        error,
        final: row.attempts >= config.MAX_ATTEMPTS,
        delayMs: retryDelayMs(row.attempts, config.RETRY_BASE_MS)
      })),
      this.owner
    )
    for (const { row } of failures) if (row.attempts >= config.MAX_ATTEMPTS) this.d.metrics.analysisFailures.inc({ reason: 'dead_letter' })
  }
}
