// Insights: stored by the worker (with the conversation's status, in one transaction),
// listed and summarised for analysts with keyset pagination.
import { and, arrayContains, eq, gte, inArray, lt, type SQL, sql } from 'drizzle-orm'
import { type InsightFields, type Intent, SENTIMENTS, type Sentiment, URGENCIES, type Urgency } from '../domain.ts'
import type { Database } from './client.ts'
import { conversations, insights } from './schema.ts'

export interface NewInsight extends InsightFields {
  conversationId: string
  source: string
  model: string
  promptVersion: string
  cached: boolean
  inputTokens: number
  outputTokens: number
  costUsd: number
}

export interface InsightFilters {
  source?: string
  sentiment?: Sentiment
  topic?: string
  intent?: Intent
  urgency?: Urgency
  promptVersion?: string
  since?: Date
  until?: Date
}

export type InsightRow = typeof insights.$inferSelect

/** Topics in a summary: a top ten reads at a glance; the rest is what filters are for. */
export const SUMMARY_TOP_TOPICS = 10
/** Sources in a summary: a deployment has a handful of channels; 20 leaves room without paging. */
export const SUMMARY_TOP_SOURCES = 20

const roundScore = (avg: number | string | null) => (avg === null ? 0 : Math.round(Number(avg) * 1000) / 1000)

/** A keyset position: a time and the id that breaks ties at that time. */
export interface Cursor {
  at: Date
  id: string
}

export function insightsRepository(database: Database) {
  const { db } = database

  function where(f: InsightFilters, cursor?: Cursor): SQL | undefined {
    return and(
      f.source !== undefined ? eq(insights.source, f.source) : undefined,
      f.sentiment !== undefined ? eq(insights.sentiment, f.sentiment) : undefined,
      f.intent !== undefined ? eq(insights.intent, f.intent) : undefined,
      f.urgency !== undefined ? eq(insights.urgency, f.urgency) : undefined,
      f.promptVersion !== undefined ? eq(insights.promptVersion, f.promptVersion) : undefined,
      f.topic !== undefined ? arrayContains(insights.topics, [f.topic]) : undefined,
      f.since !== undefined ? gte(insights.createdAt, f.since) : undefined,
      f.until !== undefined ? lt(insights.createdAt, f.until) : undefined,
      // row-value comparison so the (created_at DESC, id DESC) index serves the page directly
      cursor ? sql`(${insights.createdAt}, ${insights.conversationId}) < (${cursor.at}, ${cursor.id})` : undefined
    )
  }

  return {
    /**
     * Stores insights and marks their conversations analysed, atomically. The insight's
     * primary key is the conversation id, so a second writer (an expired lease finishing
     * late) inserts nothing; only rows this owner still holds change status.
     */
    async storeMany(items: NewInsight[], owner: string): Promise<{ stored: string[] }> {
      if (items.length === 0) return { stored: [] }
      // ms precision (JS Date) so a cursor built from a row compares exactly with it
      const now = new Date()
      return database.transaction(async (tx) => {
        const inserted = await tx
          .insert(insights)
          .values(items.map((i) => ({ ...i, createdAt: now })))
          .onConflictDoNothing()
          .returning({ id: insights.conversationId })
        const ids = items.map((i) => i.conversationId)
        await tx
          .update(conversations)
          .set({ status: 'analyzed', analyzedAt: now, updatedAt: now, leaseOwner: null, leaseExpiresAt: null, lastError: null })
          .where(and(inArray(conversations.id, ids), eq(conversations.status, 'processing'), eq(conversations.leaseOwner, owner)))
        return { stored: inserted.map((r) => r.id) }
      })
    },

    async getByConversation(id: string): Promise<InsightRow | null> {
      const rows = await db.select().from(insights).where(eq(insights.conversationId, id)).limit(1)
      return rows[0] ?? null
    },

    async getMany(ids: string[]): Promise<InsightRow[]> {
      if (ids.length === 0) return []
      return db.select().from(insights).where(inArray(insights.conversationId, ids))
    },

    /** Newest first; fetches limit+1 to know whether a next page exists. */
    /** The page query itself, so its plan can be checked (test/db/explain.test.ts). */
    listQuery(filters: InsightFilters, limit: number, cursor?: Cursor) {
      return db
        .select()
        .from(insights)
        .where(where(filters, cursor))
        .orderBy(sql`${insights.createdAt} DESC`, sql`${insights.conversationId} DESC`)
        .limit(limit + 1)
    },

    async list(filters: InsightFilters, limit: number, cursor?: Cursor): Promise<{ items: InsightRow[]; next?: Cursor }> {
      const rows = await this.listQuery(filters, limit, cursor)
      const items = rows.slice(0, limit)
      const last = items[items.length - 1]
      return { items, next: rows.length > limit && last ? { at: last.createdAt, id: last.conversationId } : undefined }
    },

    /**
     * Counts over the filtered insights. With `since`, each top topic also carries its count
     * in the period of the same length just before (`until`, or `now`, back to `since`), so
     * an analyst sees what is rising; without `since` there is no period to compare with.
     */
    async summary(filters: InsightFilters, now: Date = new Date()) {
      const w = where(filters)
      const whereSql = w ? sql`WHERE ${w}` : sql``
      const q = <T>(s: SQL) => database.query<T>(s)
      const avgScore = sql`avg(${insights.sentiment_score})::float8`
      const topicsQuery = () => {
        if (!filters.since) {
          return sql`SELECT t AS topic, count(*)::int AS n, NULL::int AS prev FROM ${insights}, unnest(${insights.topics}) AS t ${whereSql}
              GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ${SUMMARY_TOP_TOPICS}`
        }
        const since = filters.since
        const end = filters.until ?? now
        const previousSince = new Date(since.getTime() - Math.max(0, end.getTime() - since.getTime()))
        // one scan over both periods; the current period's order decides the top topics
        const current = sql`${insights.createdAt} >= ${since}`
        return sql`SELECT t AS topic, (count(*) FILTER (WHERE ${current}))::int AS n, (count(*) FILTER (WHERE NOT (${current})))::int AS prev
              FROM ${insights}, unnest(${insights.topics}) AS t WHERE ${where({ ...filters, since: previousSince })!}
              GROUP BY 1 HAVING count(*) FILTER (WHERE ${current}) > 0 ORDER BY 2 DESC, 1 LIMIT ${SUMMARY_TOP_TOPICS}`
      }
      const [totals, sentiments, urgencies, topics, days, sources] = await Promise.all([
        q<{ n: number }>(sql`SELECT count(*)::int AS n FROM ${insights} ${whereSql}`),
        q<{ k: string; n: number }>(sql`SELECT sentiment AS k, count(*)::int AS n FROM ${insights} ${whereSql} GROUP BY 1`),
        q<{ k: string; n: number }>(sql`SELECT urgency AS k, count(*)::int AS n FROM ${insights} ${whereSql} GROUP BY 1`),
        q<{ topic: string; n: number; prev: number | null }>(topicsQuery()),
        q<{ day: string; n: number; avg: number | string | null }>(
          sql`SELECT to_char(${insights.createdAt} AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)::int AS n, ${avgScore} AS avg
              FROM ${insights} ${whereSql} GROUP BY 1 ORDER BY 1`
        ),
        q<{ source: string; n: number; avg: number | string | null }>(
          sql`SELECT ${insights.source} AS source, count(*)::int AS n, ${avgScore} AS avg
              FROM ${insights} ${whereSql} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ${SUMMARY_TOP_SOURCES}`
        )
      ])
      // every label of the domain, zero where no insight has it
      const tally = <K extends string>(rows: { k: string; n: number }[], keys: readonly K[]) => {
        const out = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>
        for (const r of rows) if ((keys as readonly string[]).includes(r.k)) out[r.k as K] = Number(r.n)
        return out
      }
      return {
        total: Number(totals[0]?.n ?? 0),
        by_sentiment: tally(sentiments, SENTIMENTS),
        by_urgency: tally(urgencies, URGENCIES),
        top_topics: topics.map((t) => ({ topic: t.topic, count: Number(t.n), previous_count: t.prev === null ? null : Number(t.prev) })),
        by_day: days.map((d) => ({ day: d.day, count: Number(d.n), avg_sentiment: roundScore(d.avg) })),
        by_source: sources.map((r) => ({ source: r.source, count: Number(r.n), avg_sentiment: roundScore(r.avg) }))
      }
    }
  }
}

export type InsightsRepository = ReturnType<typeof insightsRepository>
