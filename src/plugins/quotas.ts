// Conversation quotas per key tier and UTC day/month, counted in PostgreSQL so they survive
// restarts and are shared by every instance. Only new conversations count: duplicates are
// given back after the insert.
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { type Config, tierLimits } from '../config.ts'
import type { Tier } from '../domain.ts'
import { AppError } from '../errors.ts'

export interface Quotas {
  /** throws QUOTA_EXCEEDED (429) when n more conversations would pass a limit */
  consume(req: FastifyRequest, n: number): Promise<void>
  refund(req: FastifyRequest, n: number): Promise<void>
  limitsFor(tier: Tier): { daily: number; monthly: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    quotas: Quotas
  }
}

export default fp(
  async (app, opts: { config: Config }) => {
    const { config } = opts
    const repo = app.repos.apiKeys
    const { tiers } = tierLimits(config)
    const limitsFor = (tier: Tier) => ({ daily: tiers[tier].daily, monthly: tiers[tier].monthly })
    app.decorate('quotas', {
      limitsFor,
      async consume(req, n) {
        const key = req.apiKey
        if (!key || n <= 0) return // AUTH=off: no keys, no quotas
        const r = await repo.consumeQuota(key.id, n, limitsFor(key.tier))
        if (!r.ok) {
          const retryAfter = Math.max(1, Math.ceil((r.resetsAt.getTime() - Date.now()) / 1000))
          req.log.info({ key_id: key.id, period: r.period }, 'quota exceeded')
          throw new AppError('QUOTA_EXCEEDED', `the ${r.period === 'day' ? 'daily' : 'monthly'} conversation quota of this key is used up`, {
            retryAfter,
            details: { period: r.period, resets_at: r.resetsAt.toISOString(), limit: limitsFor(key.tier)[r.period === 'day' ? 'daily' : 'monthly'] }
          })
        }
      },
      async refund(req, n) {
        if (req.apiKey && n > 0) await repo.refundQuota(req.apiKey.id, n)
      }
    } satisfies Quotas)
  },
  { name: 'quotas', dependencies: ['database'] }
)
