// Admin routes: model usage and budget, dead letters.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { badRequest, notFound } from '../errors.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'
import { ErrorBody, IdParams, Status, storableInstant, Tier, UUID_RE } from './schemas.ts'

const Day = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' })

const UsageOut = Type.Object({
  days: Type.Array(
    Type.Object({
      day: Type.String(),
      model: Type.String(),
      calls: Type.Integer(),
      input_tokens: Type.Integer(),
      output_tokens: Type.Integer(),
      cost_usd: Type.Number()
    })
  ),
  totals: Type.Object({ calls: Type.Integer(), input_tokens: Type.Integer(), output_tokens: Type.Integer(), cost_usd: Type.Number() }),
  keys: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      prefix: Type.String(),
      tier: Tier,
      conversations_today: Type.Integer(),
      conversations_this_month: Type.Integer(),
      daily_quota: Type.Integer(),
      monthly_quota: Type.Integer()
    })
  ),
  budget: Type.Object({
    daily_limit_usd: Type.Union([Type.Number(), Type.Null()]),
    spent_today_usd: Type.Number(),
    remaining_today_usd: Type.Union([Type.Number(), Type.Null()]),
    resets_at: Type.String(),
    exhausted: Type.Boolean()
  })
})

const DeadLetter = Type.Object({
  id: Type.String(),
  source: Type.String(),
  external_id: Type.Union([Type.String(), Type.Null()]),
  attempts: Type.Integer(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  received_at: Type.String(),
  failed_at: Type.String()
})

// a real calendar day PostgreSQL can hold (2026-02-30 and 0000-01-01 are not)
const validDay = (s: string) => {
  const d = new Date(`${s}T00:00:00Z`)
  return storableInstant(d) && d.toISOString().startsWith(s)
}

const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const round = (n: number) => Math.round(n * 1e6) / 1e6

  app.get(
    '/api/v1/usage',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Model tokens, calls and cost per UTC day and model, and the remaining daily budget',
        querystring: Type.Object({ since: Type.Optional(Day), until: Type.Optional(Day) }, { additionalProperties: false }),
        response: { 200: UsageOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => {
      const { since, until } = req.query
      for (const d of [since, until]) if (d && !validDay(d)) throw badRequest(`${d} is not a valid day (YYYY-MM-DD)`)
      const rows = await app.repos.usage.report(since, until)
      const budget = app.pipeline.budget
      const days = rows.map((r) => ({
        day: r.day,
        model: r.model,
        calls: r.calls,
        input_tokens: Number(r.inputTokens),
        output_tokens: Number(r.outputTokens),
        cost_usd: round(r.costUsd)
      }))
      const remaining = budget.remaining()
      const keys = (await app.repos.apiKeys.usage()).map((k) => {
        const limits = app.quotas.limitsFor(k.tier)
        return {
          id: k.id,
          name: k.name,
          prefix: k.prefix,
          tier: k.tier,
          conversations_today: Number(k.day),
          conversations_this_month: Number(k.month),
          daily_quota: limits.daily,
          monthly_quota: limits.monthly
        }
      })
      return {
        days,
        keys,
        totals: {
          calls: days.reduce((a, d) => a + d.calls, 0),
          input_tokens: days.reduce((a, d) => a + d.input_tokens, 0),
          output_tokens: days.reduce((a, d) => a + d.output_tokens, 0),
          cost_usd: round(days.reduce((a, d) => a + d.cost_usd, 0))
        },
        budget: {
          daily_limit_usd: budget.limit ?? null,
          spent_today_usd: round(budget.spentToday()),
          remaining_today_usd: remaining === null ? null : round(remaining),
          resets_at: budget.resetsAt().toISOString(),
          exhausted: budget.exhausted()
        }
      }
    }
  )

  app.get(
    '/api/v1/dead-letters',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Conversations that failed analysis after the maximum attempts, newest failure first',
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }), cursor: Type.Optional(Type.String({ maxLength: 200 })) },
          { additionalProperties: false }
        ),
        response: {
          200: Type.Object({ items: Type.Array(DeadLetter), next_cursor: Type.Union([Type.String(), Type.Null()]) }),
          '4xx': ErrorBody,
          '5xx': ErrorBody
        }
      }
    },
    async (req) => {
      const cursor = req.query.cursor ? decodeCursor(req.query.cursor) : undefined
      const before = cursor && { updatedAt: cursor.at, id: cursor.id }
      const rows = await app.repos.conversations.listDeadLetters(req.query.limit + 1, before)
      const items = rows.slice(0, req.query.limit)
      const last = items[items.length - 1]
      return {
        items: items.map((r) => ({
          id: r.id,
          source: r.source,
          external_id: r.externalId,
          attempts: r.attempts,
          last_error: r.lastError,
          received_at: r.receivedAt.toISOString(),
          failed_at: r.failedAt.toISOString()
        })),
        next_cursor: rows.length > req.query.limit && last ? encodeCursor({ at: last.failedAt, id: last.id }) : null
      }
    }
  )

  app.post(
    '/api/v1/dead-letters/:id/retry',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Put a dead letter back in the queue with fresh attempts',
        params: IdParams,
        response: { 202: Type.Object({ id: Type.String(), status: Status }), '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req, reply) => {
      const retried = UUID_RE.test(req.params.id) ? await app.repos.conversations.retryDeadLetter(req.params.id) : null
      if (!retried) throw notFound('dead letter')
      app.pipeline.enqueue([retried.id])
      return reply.code(202).send(retried)
    }
  )
}

export default adminRoutes
