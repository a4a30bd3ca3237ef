// The analysis pipeline's lifecycle: queue, cache, analyzer, breaker, batch size, budget and
// the worker that composes them. Registered after the database, so on close the worker
// drains and releases its claims before the pool is closed.
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import type { Analyzer } from '../analyzers/analyzer.ts'
import { createAnalyzer } from '../analyzers/index.ts'
import type { Config } from '../config.ts'
import { AdaptiveBatchSize } from '../pipeline/batch-size.ts'
import { CircuitBreaker, circuitStateValue } from '../pipeline/breaker.ts'
import { DailyBudget } from '../pipeline/budget.ts'
import { AnalysisCache } from '../pipeline/cache.ts'
import { eventLoopLag } from '../pipeline/fair-share.ts'
import { InsightBus } from '../pipeline/insight-bus.ts'
import { type PrefilterOptions, prefilterOptionsFrom } from '../pipeline/prefilter.ts'
import { WorkQueue } from '../pipeline/queue.ts'
import { Worker } from '../pipeline/worker.ts'

export interface Pipeline {
  queue: WorkQueue
  worker: Worker
  breaker: CircuitBreaker
  budget: DailyBudget
  analyzer: Analyzer
  insights: InsightBus
  prefilter: PrefilterOptions
  cache: AnalysisCache
  /** hand freshly committed pending ids to the worker (best effort: the database is the truth) */
  enqueue(ids: string[]): void
}

declare module 'fastify' {
  interface FastifyInstance {
    pipeline: Pipeline
  }
}

export default fp(
  async (app, opts: { config: Config; logger: Logger; analyzer?: Analyzer }) => {
    const { config } = opts
    const metrics = app.metrics
    const analyzer = opts.analyzer ?? createAnalyzer(config, { metrics, logger: opts.logger })
    const queue = new WorkQueue(config.QUEUE_MAX)
    const breaker = new CircuitBreaker({
      failureThreshold: config.BREAKER_FAILURE_THRESHOLD,
      cooldownMs: config.BREAKER_COOLDOWN_MS,
      onStateChange: (state) => {
        metrics.circuitState.set(circuitStateValue(state))
        app.log.warn({ circuit: state }, 'model circuit changed state')
      }
    })
    metrics.circuitState.set(0)
    const budget = new DailyBudget(config.DAILY_BUDGET_USD, app.repos.usage)
    const prefilter = prefilterOptionsFrom(config)
    // The table only for analyzers that cost money or a network call: for the local one an
    // analysis (~0.2 ms) is cheaper than the table's read and write. Its LRU stays: repeated
    // texts (bots, templates) are served from memory either way.
    const cache = new AnalysisCache(app.repos.analysisCache, {
      ttlSeconds: config.CACHE_TTL_SECONDS,
      lruSize: config.CACHE_LRU_SIZE,
      persistent: analyzer.billable
    })
    const lag = eventLoopLag()
    app.addHook('onClose', async () => lag.stop())
    const worker = new Worker({
      config,
      conversations: app.repos.conversations,
      insights: app.repos.insights,
      usage: app.repos.usage,
      queue,
      cache,
      analyzer,
      breaker,
      batchSize: new AdaptiveBatchSize({
        min: config.BATCH_MIN,
        max: config.BATCH_MAX,
        initial: config.BATCH_INITIAL,
        latencyTargetMs: config.BATCH_LATENCY_TARGET_MS
      }),
      budget,
      metrics,
      logger: opts.logger,
      // a PGlite folder is this process's alone (data-dir-lock.ts)
      exclusiveDatabase: app.database.kind === 'pglite',
      loopLagMs: lag.lagMs
    })

    const insights = new InsightBus(app.database, app.repos.insights, opts.logger)

    app.decorate('pipeline', {
      queue,
      worker,
      insights,
      breaker,
      budget,
      analyzer,
      prefilter,
      cache,
      enqueue(ids: string[]) {
        for (const id of ids) if (!queue.offer(id)) break
        metrics.queueDepth.set(queue.size)
      }
    })

    if (config.WORKER_ENABLED) app.addHook('onReady', async () => worker.start())
    app.addHook('onClose', async () => {
      await worker.stop()
      await insights.close()
      await analyzer.close()
    })
  },
  { name: 'pipeline', dependencies: ['database', 'metrics'] }
)
