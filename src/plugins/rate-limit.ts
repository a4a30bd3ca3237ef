// Rate limits per API key (per client IP where no key applies), by tier, with a stricter
// budget for ingest than for reads (ingest costs model money downstream). With REDIS_URL the
// counts live in Redis and are shared by every instance; without it they are per process.
// When Redis fails, RATE_LIMIT_ON_STORE_ERROR decides (see src/rate-limit-store.ts).
import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { type Config, tierLimits } from '../config.ts'
import { AppError } from '../errors.ts'
import { failoverStore } from '../rate-limit-store.ts'

const kindOf = (req: FastifyRequest) => (req.routeOptions.config.scope === 'ingest' ? 'ingest' : 'read')

export default fp(
  async (app, opts: { config: Config }) => {
    const { config } = opts
    const limits = tierLimits(config)
    // the Redis client and its failure state are the shared store's (src/plugins/shared-store.ts)
    const store = app.sharedStore ? failoverStore({ ...app.sharedStore, nameSpace: 'gleaner-rl:' }) : undefined
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
  { name: 'rate-limit', dependencies: ['auth', 'shared-store'] }
)
