// Insights: stored by the worker (with the conversation's status, in one transaction),
// listed and summarised for analysts with keyset pagination.
import { and, arrayContains, eq, gte, inArray, lt, type SQL, sql } from 'drizzle-orm'
import { type InsightFields, type Intent, SENTIMENTS, type Sentiment, URGENCIES, type Urgency } from '../domain.ts'
import type { Database } from './client.ts'
import { IDS_PER_NOTIFY, INSIGHTS_CHANNEL } from './notify.ts'
import { insights, statusLiteral } from './schema.ts'
import { asCtes, type WriteFragment } from './write-fragment.ts'

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

/*
 * The store statement: queue rows out, insights in, and the stored ids announced to every
 * instance's live streams (NOTIFY, delivered at commit), in one round trip. Hand-written
 * rather than drizzle's insert(): the builder's per-value mapping was a fifth of the
 * worker's CPU at the local analyzer's rate. The rows travel as one JSON document
 * (jsonb_to_recordset), as ingest's do: no array literal built and escaped per column in the
 * driver, one JSON parse in PostgreSQL, and topics stay the JSON arrays they are.
 */
const STORE_INSIGHTS = `
  WITH v AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb)
      AS v(id uuid, source text, sentiment text, score float4, topics jsonb, intent text, urgency text, summary text, language text,
           model text, prompt_version text, cached bool, input_tokens int, output_tokens int, cost_usd float8)
  ), done AS (
    DELETE FROM conversation_queue q USING v
    WHERE q.conversation_id = v.id AND q.state = ${statusLiteral('processing')} AND q.lease_owner = $2
    RETURNING q.conversation_id, q.attempts
  ), ins AS (
    INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, topics, intent, urgency, summary, language,
                          model, prompt_version, cached, input_tokens, output_tokens, cost_usd, attempts, created_at)
    SELECT v.id, v.source, v.sentiment, v.score, ARRAY(SELECT jsonb_array_elements_text(v.topics)), v.intent, v.urgency,
           v.summary, v.language, v.model, v.prompt_version, v.cached, v.input_tokens, v.output_tokens, v.cost_usd, done.attempts, $3
    FROM v JOIN done ON done.conversation_id = v.id
    ON CONFLICT (conversation_id) DO NOTHING
    RETURNING conversation_id
  ), announced AS (
    SELECT pg_notify($4, string_agg(conversation_id::text, ',')) FROM (
      SELECT conversation_id, (row_number() OVER () - 1) / ${IDS_PER_NOTIFY} AS chunk FROM ins) AS x
    GROUP BY chunk
  )
`
// after the writes the batch carries (asCtes): the cache rows and the usage of its model calls
const STORE_SELECT = `
  -- the scalar subquery makes the announcement run (a CTE nobody reads is not evaluated)
  SELECT conversation_id AS id, (SELECT count(*) FROM announced) AS notifications FROM ins`
const STORE_PARAMS = 4

/** An insight row as row_to_json spells it (snake_case, timestamps as text) → the row type. */
export function insightFromJson(r: Record<string, unknown>): InsightRow {
  return {
    conversationId: r.conversation_id as string,
    source: r.source as string,
    sentiment: r.sentiment as Sentiment,
    sentiment_score: Number(r.sentiment_score),
    topics: (r.topics as string[]) ?? [],
    intent: r.intent as Intent,
    urgency: r.urgency as Urgency,
    summary: r.summary as string,
    language: r.language as string,
    model: r.model as string,
    promptVersion: r.prompt_version as string,
    cached: Boolean(r.cached),
    inputTokens: Number(r.input_tokens),
    outputTokens: Number(r.output_tokens),
    costUsd: Number(r.cost_usd),
    attempts: Number(r.attempts),
    createdAt: new Date(r.created_at as string)
  }
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
     * Stores insights and ends their conversations' work, atomically, in one statement:
     * each insight goes in only with the queue row this owner still holds, which the same
     * statement deletes. A row whose lease was lost to another instance (or that was erased
     * meanwhile) stores nothing; the insight's primary key still makes a second insight
     * impossible whatever happens. `also` are writes that belong to the batch (its analysis-cache
     * rows, its model usage): they ride the same statement and commit with it.
     */
    async storeMany(items: NewInsight[], owner: string, also: readonly WriteFragment[] = []): Promise<{ stored: string[] }> {
      if (items.length === 0 && also.length === 0) return { stored: [] }
      // ms precision (JS Date) so a cursor built from a row compares exactly with it
      const now = new Date()
      const carried = asCtes(also, STORE_PARAMS)
      const rows = await database.raw<{ id: string }>(
        STORE_INSIGHTS + carried.ctes + STORE_SELECT,
        [
          JSON.stringify(
            items.map((i) => ({
              id: i.conversationId,
              source: i.source,
              sentiment: i.sentiment,
              score: i.sentiment_score,
              topics: i.topics,
              intent: i.intent,
              urgency: i.urgency,
              summary: i.summary,
              language: i.language,
              model: i.model,
              prompt_version: i.promptVersion,
              cached: i.cached,
              input_tokens: i.inputTokens,
              output_tokens: i.outputTokens,
              cost_usd: i.costUsd
            }))
          ),
          owner,
          now,
          INSIGHTS_CHANNEL,
          ...carried.params
        ],
        `gleaner_store_insights${carried.name}`
      )
      return { stored: rows.map((r) => r.id) }
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
     * Counts over the filtered insights, read from the rollups (see schema.ts): whole UTC
     * days of the range come from them, and only the partial days at its edges (a `since`
     * or `until` that is not a UTC midnight) are counted from insights, at most a day on
     * each side through the created_at index. With `since`, each top topic and the
     * sentiments also carry their counts in the period of the same length just before
     * (`until`, or `now`, back to `since`), so an analyst sees what is rising.
     * Under a topic filter the rollups know no co-occurring topics: top topics then hold
     * that topic alone.
     */
    async summary(filters: InsightFilters, now: Date = new Date()) {
      const q = <T>(s: SQL) => database.query<T>(s)
      const current: Range = { since: filters.since, until: filters.until }
      const previous: Range | undefined = filters.since && previousPeriod(filters.since, filters.until ?? now)
      const [main, prevSentiments, topics] = await Promise.all([
        q<{ day: string | null; source: string | null; sentiment: string | null; urgency: string | null; n: number | string; s: number | string; g: number }>(sql`
          SELECT day, source, sentiment, urgency, sum(n)::float8 AS n, sum(score_sum)::float8 AS s, GROUPING(day, source, sentiment, urgency)::int AS g
          FROM (${countRows(filters, current)}) AS u
          GROUP BY GROUPING SETS ((), (day), (source), (sentiment), (urgency))`),
        previous
          ? q<{ sentiment: string | null; n: number | string }>(sql`
              SELECT sentiment, sum(n)::float8 AS n FROM (${countRows(filters, previous)}) AS u GROUP BY GROUPING SETS ((), (sentiment))`)
          : Promise.resolve(null),
        q<{ topic: string; n: number | string; prev: number | string | null }>(sql`
          SELECT topic, sum(n) FILTER (WHERE p = 0)::float8 AS n, ${previous ? sql`coalesce(sum(n) FILTER (WHERE p = 1), 0)::float8` : sql`NULL::float8`} AS prev
          FROM (${topicRows(filters, current, 0)}${previous ? sql` UNION ALL ${topicRows(filters, previous, 1)}` : sql``}) AS u
          GROUP BY topic HAVING sum(n) FILTER (WHERE p = 0) > 0 ORDER BY 2 DESC, 1 LIMIT ${SUMMARY_TOP_TOPICS}`)
      ])
      // GROUPING() has a bit set for each column a row is not grouped by: day 8, source 4, sentiment 2, urgency 1
      const of = (g: number) => main.filter((r) => r.g === g && Number(r.n) > 0)
      const tally = <K extends string>(rows: { k: string | null; n: number | string }[], keys: readonly K[]) => {
        const out = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>
        for (const r of rows) if (r.k !== null && (keys as readonly string[]).includes(r.k)) out[r.k as K] = Number(r.n)
        return out
      }
      const avg = (r: { n: number | string; s: number | string }) => roundScore(Number(r.s) / Number(r.n))
      return {
        total: Number(of(15)[0]?.n ?? 0),
        by_sentiment: tally(
          of(13).map((r) => ({ k: r.sentiment, n: r.n })),
          SENTIMENTS
        ),
        by_urgency: tally(
          of(14).map((r) => ({ k: r.urgency, n: r.n })),
          URGENCIES
        ),
        top_topics: topics.map((t) => ({ topic: t.topic, count: Number(t.n), previous_count: t.prev === null ? null : Number(t.prev) })),
        by_day: of(7)
          .map((r) => ({ day: r.day!, count: Number(r.n), avg_sentiment: avg(r) }))
          .sort((a, b) => a.day.localeCompare(b.day)),
        by_source: of(11)
          .map((r) => ({ source: r.source!, count: Number(r.n), avg_sentiment: avg(r) }))
          .sort((a, b) => b.count - a.count || (a.source < b.source ? -1 : a.source > b.source ? 1 : 0))
          .slice(0, SUMMARY_TOP_SOURCES),
        previous_total: prevSentiments ? Number(prevSentiments.find((r) => r.sentiment === null)?.n ?? 0) : null,
        previous_by_sentiment: prevSentiments
          ? tally(
              prevSentiments.map((r) => ({ k: r.sentiment, n: r.n })),
              SENTIMENTS
            )
          : null
      }
    }
  }
}

/** A half-open time range; an absent end is unbounded. */
interface Range {
  since?: Date
  until?: Date
}

/** The period of the same length just before [since, end). */
function previousPeriod(since: Date, end: Date): Range {
  // never before year 1: no insight is older, and a day PostgreSQL cannot parse would be a 500
  const start = Math.max(EARLIEST_MS, since.getTime() - Math.max(0, end.getTime() - since.getTime()))
  return { since: new Date(start), until: since }
}

const EARLIEST_MS = Date.parse('0001-01-01T00:00:00Z')
const LATEST_MS = Date.parse('9999-12-31T00:00:00Z')

const DAY_MS = 86_400_000
const midnightOnOrBefore = (d: Date) => new Date(Math.floor(d.getTime() / DAY_MS) * DAY_MS)
const isMidnight = (d: Date) => d.getTime() % DAY_MS === 0
const dayOf = (d: Date) => d.toISOString().slice(0, 10)

/** A stretch of time counted from insights, added to (sign 1) or taken from (-1) the rollups' days. */
interface Scan {
  since: Date
  until: Date
  sign: 1 | -1
  /**
   * The UTC day the scan lies in, when it lies in one (every scan of a split by days): then
   * its rows are grouped without computing each one's day, a hash aggregate over a few
   * dozen groups instead of a sort of every row by a computed text (173 → 37 ms over
   * 100,000 insights).
   */
  day?: string
}

/**
 * A range cut into what the rollups answer (whole UTC days) and what is counted from
 * insights: the partial day at either edge, or the whole range when it lies inside one day.
 * An edge that covers most of its day is read as the whole day minus the rest of it, so no
 * edge scans more than half a day of insights.
 */
function splitByDays(range: Range): { days?: { from?: string; to?: string }; scans: Scan[] } {
  // kept inside the years a day literal can name (a filter may say 9999-12-31T23:59:59Z); insights
  // carry the time they were stored, so none lies outside
  const clamp = (d?: Date) => d && new Date(Math.min(LATEST_MS, Math.max(EARLIEST_MS, d.getTime())))
  let since = clamp(range.since)
  let until = clamp(range.until)
  const scans: Scan[] = []
  if (since && !isMidnight(since)) {
    const start = midnightOnOrBefore(since)
    const next = new Date(start.getTime() + DAY_MS)
    const day = dayOf(start)
    if (until && until <= next) return { scans: since < until ? [{ since, until, sign: 1, day }] : [] }
    if (next.getTime() - since.getTime() > DAY_MS / 2) {
      scans.push({ since: start, until: since, sign: -1, day })
      since = start
    } else {
      scans.push({ since, until: next, sign: 1, day })
      since = next
    }
  }
  if (until && !isMidnight(until)) {
    const start = midnightOnOrBefore(until)
    const next = new Date(start.getTime() + DAY_MS)
    const day = dayOf(start)
    if (until.getTime() - start.getTime() > DAY_MS / 2) {
      scans.push({ since: until, until: next, sign: -1, day })
      until = next
    } else {
      scans.push({ since: start, until, sign: 1, day })
      until = start
    }
  }
  if (since && until && since >= until) return { scans }
  return { days: { from: since && dayOf(since), to: until && dayOf(until) }, scans }
}

/**
 * How a range is read under these filters: the rollups keep no prompt version, so a
 * `prompt_version` summary (an A/B comparison, usually over recent days) is counted from the
 * insights themselves over the whole range; everything else is split by days.
 */
function plan(f: InsightFilters, range: Range): ReturnType<typeof splitByDays> {
  if (f.promptVersion === undefined) return splitByDays(range)
  const since = new Date(Math.max(EARLIEST_MS, range.since?.getTime() ?? EARLIEST_MS))
  // the last millisecond of year 9999: a later Date prints as "+010000-…", which PostgreSQL rejects
  const end = LATEST_MS + DAY_MS - 1
  const until = new Date(Math.min(end, range.until?.getTime() ?? end))
  return { scans: since < until ? [{ since, until, sign: 1 }] : [] }
}

/** Filters only the insights have: applied to the scans, never to the rollups (see plan). */
const insightOnlyFilters = (f: InsightFilters, promptVersion: SQL): SQL[] => (f.promptVersion !== undefined ? [sql`${promptVersion} = ${f.promptVersion}`] : [])

/** Equality filters on rollup or insight columns of the same names. */
function dimensionFilters(f: InsightFilters, dims: { source: SQL; sentiment: SQL; urgency: SQL; intent: SQL }): SQL[] {
  return [
    f.source !== undefined ? sql`${dims.source} = ${f.source}` : undefined,
    f.sentiment !== undefined ? sql`${dims.sentiment} = ${f.sentiment}` : undefined,
    f.urgency !== undefined ? sql`${dims.urgency} = ${f.urgency}` : undefined,
    f.intent !== undefined ? sql`${dims.intent} = ${f.intent}` : undefined
  ].filter((x): x is SQL => x !== undefined)
}

const conj = (parts: SQL[]) => (parts.length ? sql.join(parts, sql` AND `) : sql`true`)
const dayRange = (column: SQL, days: { from?: string; to?: string }) =>
  [days.from ? sql`${column} >= ${days.from}::date` : undefined, days.to ? sql`${column} < ${days.to}::date` : undefined].filter(
    (x): x is SQL => x !== undefined
  )
const insightColumns = { source: sql`source`, sentiment: sql`sentiment`, urgency: sql`urgency`, intent: sql`intent` }
const utcDay = sql`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`

/**
 * Rows of (day, source, sentiment, urgency, n, score_sum) whose sums are the filtered counts
 * over the range: from the narrowest rollup that has the filtered columns (intent only in
 * insight_rollups), or insight_topic_rollups under a topic filter (an
 * insight counts once per topic, so one topic's rows count each of its insights once).
 */
function countRows(f: InsightFilters, range: Range): SQL {
  const { days, scans } = plan(f, range)
  const parts: SQL[] = []
  if (days) {
    const table = f.topic !== undefined ? sql`insight_topic_rollups` : f.intent !== undefined ? sql`insight_rollups` : sql`insight_rollups_narrow`
    const where = [...dimensionFilters(f, insightColumns), ...dayRange(sql`day`, days), ...(f.topic !== undefined ? [sql`topic = ${f.topic}`] : [])]
    parts.push(sql`SELECT to_char(day, 'YYYY-MM-DD') AS day, source, sentiment, urgency, n, score_sum FROM ${table} WHERE ${conj(where)}`)
  }
  for (const s of scans) {
    const where = [
      ...dimensionFilters(f, insightColumns),
      ...insightOnlyFilters(f, sql`prompt_version`),
      sql`created_at >= ${s.since}`,
      sql`created_at < ${s.until}`,
      // `= ANY`, not `@>`: the GIN index cannot serve it, so the planner reads the bounded
      // slice of time through a created_at index; with `@>` it ANDed in a bitmap of every
      // insight of the month with that topic (2.1M rows at 20M, 162 of a 188 ms statement)
      ...(f.topic !== undefined ? [sql`${f.topic} = ANY(topics)`] : [])
    ]
    parts.push(sql`SELECT ${s.day === undefined ? utcDay : sql`${s.day}::text`} AS day, source, sentiment, urgency, count(*) * ${s.sign}::int AS n, sum(sentiment_score::float8) * ${s.sign}::int AS score_sum
      FROM insights WHERE ${conj(where)} GROUP BY ${s.day === undefined ? sql`1, ` : sql``}2, 3, 4`)
  }
  // an empty range still yields a well-typed empty row set
  if (parts.length === 0) parts.push(sql`SELECT NULL::text AS day, NULL::text AS source, NULL::text AS sentiment, NULL::text AS urgency, 0::bigint AS n, 0::float8 AS score_sum WHERE false`)
  return sql.join(parts, sql` UNION ALL `)
}

/**
 * Rows of (topic, n, p) over the range, p tagging the period: from the narrow
 * insight_topic_totals when at most a source filters, else from insight_topic_rollups.
 */
function topicRows(f: InsightFilters, range: Range, period: number): SQL {
  const { days, scans } = plan(f, range)
  const narrow = f.topic === undefined && f.sentiment === undefined && f.urgency === undefined && f.intent === undefined
  const parts: SQL[] = []
  if (days) {
    const where = [...dimensionFilters(f, insightColumns), ...dayRange(sql`day`, days), ...(f.topic !== undefined ? [sql`topic = ${f.topic}`] : [])]
    parts.push(sql`SELECT topic, n, ${period}::int AS p FROM ${narrow ? sql`insight_topic_totals` : sql`insight_topic_rollups`} WHERE ${conj(where)}`)
  }
  for (const s of scans) {
    const where = [
      ...dimensionFilters(f, { source: sql`i.source`, sentiment: sql`i.sentiment`, urgency: sql`i.urgency`, intent: sql`i.intent` }),
      ...insightOnlyFilters(f, sql`i.prompt_version`),
      sql`i.created_at >= ${s.since}`,
      sql`i.created_at < ${s.until}`
    ]
    parts.push(sql`SELECT t.topic, count(*) * ${s.sign}::int AS n, ${period}::int AS p
      FROM insights AS i, LATERAL (SELECT DISTINCT topic FROM unnest(i.topics) AS topic) AS t
      WHERE ${conj(where)}${f.topic !== undefined ? sql` AND t.topic = ${f.topic}` : sql``} GROUP BY 1`)
  }
  if (parts.length === 0) parts.push(sql`SELECT NULL::text AS topic, 0::bigint AS n, ${period}::int AS p WHERE false`)
  return sql.join(parts, sql` UNION ALL `)
}

export type InsightsRepository = ReturnType<typeof insightsRepository>
