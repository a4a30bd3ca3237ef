// Rate limits per API key (per client IP where no key applies), by tier, with a stricter
// budget for ingest than for reads (ingest costs model money downstream). With REDIS_URL the
// counts live in Redis and are shared by every instance; without it they are per process.
// When Redis fails, RATE_LIMIT_ON_STORE_ERROR decides (see src/rate-limit-store.ts).
import { once } from 'node:events'
import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { type Config, tierLimits } from '../config.ts'
import { AppError } from '../errors.ts'
import { failoverStore, RateLimitStoreState } from '../rate-limit-store.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** null without REDIS_URL: limits are per process and nothing can fail */
    rateLimitStore: RateLimitStoreState | null
  }
}

const kindOf = (req: FastifyRequest) => (req.routeOptions.config.scope === 'ingest' ? 'ingest' : 'read')

export default fp(
  async (app, opts: { config: Config; logger: Logger }) => {
    const { config } = opts
    const limits = tierLimits(config)
    let store: ReturnType<typeof failoverStore> | undefined
    let state: RateLimitStoreState | null = null
    if (config.REDIS_URL) {
      const log = opts.logger.child({ component: 'rate-limit' })
      state = new RateLimitStoreState(config.RATE_LIMIT_ON_STORE_ERROR, (degraded) => {
        // before start-up ends the metrics are not there yet; onReady below catches up
        if (app.hasDecorator('metrics')) app.metrics.rateLimitStoreDegraded.set(degraded ? 1 : 0)
        if (degraded) log.warn({ policy: config.RATE_LIMIT_ON_STORE_ERROR, reason: state?.degradedReason }, 'rate-limit store failing: policy applies')
        else log.info('rate-limit store recovered')
      })
      const redis = new Redis(config.REDIS_URL, {
        connectTimeout: config.REDIS_CONNECT_TIMEOUT_MS,
        commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
        // a disconnected Redis fails a count at once instead of queueing it until reconnect
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0
      })
      // reconnection errors repeat every back-off: the state change above is the log line
      redis.on('error', () => {})
      app.addHook('onClose', async () => {
        redis.disconnect()
      })
      // start counting in Redis when it answers in time; otherwise start degraded, not refuse to start
      await Promise.race([once(redis, 'ready'), new Promise((resolve) => setTimeout(resolve, config.REDIS_CONNECT_TIMEOUT_MS).unref())])
      if (redis.status !== 'ready') state.failed(new Error(`not reachable within ${config.REDIS_CONNECT_TIMEOUT_MS} ms`), Date.now(), 0)
      const started = state
      app.addHook('onReady', async () => {
        app.metrics.rateLimitStoreDegraded.set(started.degradedReason ? 1 : 0)
      })
      store = failoverStore({
        redis,
        nameSpace: 'gleaner-rl:',
        state,
        retryMs: config.REDIS_RETRY_MS,
        onFallback: (policy) => app.metrics.rateLimitFallbacks.inc({ policy })
      })
    }
    app.decorate('rateLimitStore', state)
    await app.register(rateLimit, {
      global: true,
      timeWindow: config.RATE_LIMIT_WINDOW_MS,
      store,
      // store errors are handled by the policy; one that still escapes is a 503 through the error handler
      skipOnError: false,
      keyGenerator: (req) => `${req.apiKey ? `k:${req.apiKey.id}` : `ip:${req.ip}`}:${kindOf(req)}`,
      max: async (req) => {
        const l = req.apiKey ? limits.tiers[req.apiKey.tier] : limits.anonymous
        return kindOf(req) === 'ingest' ? l.ingests : l.reads
      },
      errorResponseBuilder: (_req, ctx) =>
        new AppError('RATE_LIMITED', `rate limit of ${ctx.max} requests per window exceeded; retry in ${ctx.after}`, {
          retryAfter: Math.ceil(ctx.ttl / 1000)
        })
    })
  },
  // app.metrics is read at request time only: the metrics plugin registers after this one
  { name: 'rate-limit', dependencies: ['auth'] }
)
