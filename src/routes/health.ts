// Liveness (/health) and readiness (/health/ready). Liveness fails (503 "stuck") when work
// is waiting and the worker has made no progress for STUCK_AFTER_SECONDS while nothing
// excuses it: a wedged worker must never look healthy.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { sql } from 'drizzle-orm'
import { Type } from 'typebox'
import type { Config } from '../config.ts'
import { HealthOut } from './schemas.ts'

const started = Date.now()

const healthRoutes: FastifyPluginAsyncTypebox<{ config: Config; version: string }> = async (app, { config, version }) => {
  const { pipeline } = app

  const body = () => {
    const w = pipeline.worker.status()
    const limit = pipeline.budget.limit
    // an open circuit is degraded even before the worker next looks (no work waiting)
    const endpoints = pipeline.analyzer.endpoints?.()
    // serving from a fallback (the primary's own breaker not closed) is degraded too
    const primaryDown = endpoints !== undefined && endpoints[0]?.state !== 'closed'
    const store = app.rateLimitStore
    const degraded = w.paused || pipeline.breaker.state !== 'closed' || primaryDown || Boolean(store?.degradedReason) || w.claims.stranded > 0
    const status = w.stuck ? ('stuck' as const) : degraded ? ('degraded' as const) : ('ok' as const)
    return {
      status,
      version,
      uptime_s: Math.floor((Date.now() - started) / 1000),
      queue_size: pipeline.queue.size,
      worker_running: w.running,
      circuit: pipeline.breaker.state,
      instance_id: config.INSTANCE_ID,
      paused_reason: w.paused,
      backlog: w.backlog,
      claims: w.claims,
      last_progress_at: w.last_progress_at,
      ...(endpoints ? { model_endpoints: endpoints } : {}),
      rate_limit_store: store && {
        policy: store.policy,
        degraded_reason: store.degradedReason,
        degraded_since: store.degradedSince?.toISOString() ?? null
      },
      budget:
        limit === undefined
          ? null
          : {
              limit_usd: limit,
              spent_usd: Math.round(pipeline.budget.spentToday() * 1e6) / 1e6,
              remaining_usd: Math.round((pipeline.budget.remaining() ?? 0) * 1e6) / 1e6,
              resets_at: pipeline.budget.resetsAt().toISOString()
            }
    }
  }

  app.get(
    '/health',
    {
      config: { rateLimit: false },
      schema: { tags: ['operators'], summary: 'Liveness', response: { 200: HealthOut, 503: HealthOut } }
    },
    async (_req, reply) => {
      const b = body()
      // with the worker disabled in this process there is nothing to be stuck
      return reply.code(b.status === 'stuck' && config.WORKER_ENABLED ? 503 : 200).send(b)
    }
  )

  const ReadyOut = Type.Object({
    status: Type.String(),
    checks: Type.Record(Type.String(), Type.Object({ ok: Type.Boolean(), error: Type.Optional(Type.String()) }))
  })
  app.get(
    '/health/ready',
    {
      config: { rateLimit: false },
      schema: {
        tags: ['operators'],
        summary: 'Readiness: database reachable and migrated; ?deep=true also pings the model',
        querystring: Type.Object({ deep: Type.Optional(Type.Boolean()) }),
        response: { 200: ReadyOut, 503: ReadyOut }
      }
    },
    async (req, reply) => {
      const checks: Record<string, { ok: boolean; error?: string }> = {}
      const timed = async (name: string, ms: number, fn: (signal: AbortSignal) => Promise<unknown>) => {
        const signal = AbortSignal.timeout(ms)
        try {
          await Promise.race([
            fn(signal),
            new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error(`timed out after ${ms} ms`))))
          ])
          checks[name] = { ok: true }
        } catch (err) {
          checks[name] = { ok: false, error: String((err as Error).message).slice(0, 200) }
        }
      }
      // the migrated schema answering is the check: the table exists only after migrations ran
      await timed('database', 2_000, () => app.database.query(sql`SELECT 1 FROM conversations LIMIT 0`))
      // with policy closed a failing Redis refuses limited requests: not ready; otherwise it is
      // reported here and in /health but the instance still serves
      const store = app.rateLimitStore
      if (store) checks.rate_limit_store = { ok: !store.degradedReason || store.policy !== 'closed', ...(store.degradedReason ? { error: store.degradedReason } : {}) }
      if (req.query.deep) await timed('model', 2_000, (signal) => pipeline.analyzer.ping(signal))
      const ok = Object.values(checks).every((c) => c.ok)
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not_ready', checks })
    }
  )
}

export default healthRoutes
