// Analyst reads: the insight list with keyset pagination, and the summary.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from 'typebox'
import type { InsightFilters } from '../db/insights.ts'
import { badRequest, validationFailed } from '../errors.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'
import { presentInsight } from './present.ts'
import { ErrorBody, InsightsPage, InsightsQuery, SummaryOut, SummaryQuery, storableInstant } from './schemas.ts'


function instant(value: string, field: string): Date {
  const d = new Date(value)
  if (!storableInstant(d)) throw validationFailed(`${field} must be a time between years 0001 and 9999`, [{ field, message: 'out of range' }])
  return d
}

export function filtersFrom(q: Static<typeof SummaryQuery>): InsightFilters {
  const since = q.since ? instant(q.since, 'since') : undefined
  const until = q.until ? instant(q.until, 'until') : undefined
  if (since && until && since > until) throw badRequest('since must not be after until')
  return {
    source: q.source,
    sentiment: q.sentiment,
    topic: q.topic?.toLowerCase(),
    intent: q.intent,
    urgency: q.urgency,
    promptVersion: q.prompt_version,
    since,
    until
  }
}

const insightsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const repo = app.repos.insightReads

  app.get(
    '/api/v1/insights',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['analysts'],
        summary: 'Insights, newest first, filtered, with keyset cursor pagination',
        querystring: InsightsQuery,
        response: { 200: InsightsPage, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => {
      const cursor = req.query.cursor ? decodeCursor(req.query.cursor) : undefined
      const page = await repo.list(filtersFrom(req.query), req.query.limit, cursor)
      return { items: page.items.map(presentInsight), next_cursor: page.next ? encodeCursor(page.next) : null }
    }
  )

  app.get(
    '/api/v1/insights/summary',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['analysts'],
        summary: 'Counts by sentiment, urgency, topic and day over the filtered insights',
        querystring: SummaryQuery,
        response: { 200: SummaryOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => repo.summary(filtersFrom(req.query))
  )
}

export default insightsRoutes
