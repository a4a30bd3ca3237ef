// The store counts shared by every instance live in: with REDIS_URL, one Redis client and one
// failover state (src/rate-limit-store.ts) that the auth-failure throttle and the rate limiter
// both count through, so "N instances" never means "N times the limit". Registered before
// auth, which runs before the rate limiter and needs the store as well. Without REDIS_URL it
// decorates null: counts are per process and nothing can fail.
import { once } from 'node:events'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import { type FailoverStoreOptions, RateLimitStoreState } from '../rate-limit-store.ts'

/** What a user of the store needs; it adds its own key prefix (`nameSpace`). */
export type SharedStore = Omit<FailoverStoreOptions, 'nameSpace'>

declare module 'fastify' {
  interface FastifyInstance {
    /** null without REDIS_URL */
    sharedStore: SharedStore | null
    /** the shared store's state, for /health and the metrics; null without REDIS_URL */
    rateLimitStore: RateLimitStoreState | null
  }
}

export default fp(
  async (app, opts: { config: Config; logger: Logger }) => {
    const { config } = opts
    if (!config.REDIS_URL) {
      app.decorate('sharedStore', null)
      app.decorate('rateLimitStore', null)
      return
    }
    const log = opts.logger.child({ component: 'rate-limit' })
    const state: RateLimitStoreState = new RateLimitStoreState(config.RATE_LIMIT_ON_STORE_ERROR, (degraded) => {
      // before start-up ends the metrics are not there yet; onReady below catches up
      if (app.hasDecorator('metrics')) app.metrics.rateLimitStoreDegraded.set(degraded ? 1 : 0)
      if (degraded) log.warn({ policy: config.RATE_LIMIT_ON_STORE_ERROR, reason: state.degradedReason }, 'rate-limit store failing: policy applies')
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
    app.addHook('onReady', async () => {
      app.metrics.rateLimitStoreDegraded.set(state.degradedReason ? 1 : 0)
    })
    app.decorate('rateLimitStore', state)
    app.decorate('sharedStore', {
      redis,
      state,
      retryMs: config.REDIS_RETRY_MS,
      // app.metrics is read at count time only: the metrics plugin registers after this one
      onFallback: (policy) => app.metrics.rateLimitFallbacks.inc({ policy })
    })
  },
  { name: 'shared-store' }
)
