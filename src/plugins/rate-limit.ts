// Rate limits per API key (per client IP where no key applies), by tier, with a stricter
// budget for ingest than for reads (ingest costs model money downstream). With REDIS_URL the
// counts live in Redis and are shared by every instance; without it they are per process.
import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { type Config, tierLimits } from '../config.ts'
import { AppError } from '../errors.ts'

const kindOf = (req: FastifyRequest) => (req.routeOptions.config.scope === 'ingest' ? 'ingest' : 'read')

export default fp(
  async (app, opts: { config: Config; logger: Logger }) => {
    const { config } = opts
    const limits = tierLimits(config)
    let redis: Redis | undefined
    if (config.REDIS_URL) {
      // fail fast: a slow Redis must not stall every request behind it
      redis = new Redis(config.REDIS_URL, { connectTimeout: 1_000, maxRetriesPerRequest: 1, lazyConnect: false })
      redis.on('error', (err) => opts.logger.warn({ err: { message: err.message } }, 'rate-limit store error'))
      app.addHook('onClose', async () => {
        redis?.disconnect()
      })
    }
    await app.register(rateLimit, {
      global: true,
      timeWindow: config.RATE_LIMIT_WINDOW_MS,
      redis,
      nameSpace: 'gleaner-rl:',
      // availability over strictness: if Redis is down, serve rather than refuse everyone
      skipOnError: true,
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
  { name: 'rate-limit', dependencies: ['auth'] }
)
