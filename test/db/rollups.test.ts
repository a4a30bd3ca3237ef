// Summaries from rollups: they equal a count over the insights for every filter and range,
// and the rollups stay exact through re-analysis, erasure, concurrent writers on several
// instances, and the migration that backfills them.
import { readFileSync } from 'node:fs'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t, { type Test } from 'tap'
import { type Database, openDatabase } from '../../src/db/client.ts'
import { conversationsRepository } from '../../src/db/conversations.ts'
import { erasureRepository } from '../../src/db/erasure.ts'
import { type InsightFilters, insightsRepository, type NewInsight } from '../../src/db/insights.ts'
import { INTENTS, SENTIMENTS, URGENCIES } from '../../src/domain.ts'
import { sha256 } from '../../src/pipeline/normalize.ts'
import { backendEnv, backends, testConfig } from '../helper.ts'

const SOURCES = ['web-chat', 'email', 'phone']
const TOPICS = ['billing', 'refund', 'login', 'shipping', 'app']
const DAY = 86_400_000
const BASE = Date.parse('2026-03-01T00:00:00Z')

/** A small deterministic generator, so a failure reproduces. */
function rng(seed: number) {
  let x = seed
  return () => {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31
    return x / 2 ** 31
  }
}
/** An array literal as one parameter (drizzle spreads a JS array into a list); values here need no quoting. */
const pgArray = (xs: string[]) => `{${xs.join(',')}}`
const pick = <T>(r: () => number, xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!

async function claimedIds(database: Database, n: number, owner: string, tag: string): Promise<string[]> {
  const conversations = conversationsRepository(database)
  const rows = await conversations.insertMany(
    Array.from({ length: n }, (_, i) => ({
      producer: '',
      source: 'web-chat',
      externalId: `${tag}-${i}`,
      messages: [{ role: 'user' as const, content: `message ${tag} ${i}` }],
      textHash: sha256(`${tag}-${i}`),
      status: 'pending' as const
    }))
  )
  const ids = rows.map((r) => r.id)
  await conversations.claimByIds(ids, owner, 60)
  return ids
}

function randomInsight(r: () => number, id: string): NewInsight {
  const topics = [...new Set(Array.from({ length: Math.floor(r() * 3) }, () => pick(r, TOPICS)))]
  return {
    conversationId: id,
    source: pick(r, SOURCES),
    sentiment: pick(r, SENTIMENTS),
    sentiment_score: Math.round((r() * 2 - 1) * 100) / 100,
    topics,
    intent: pick(r, INTENTS),
    urgency: pick(r, URGENCIES),
    summary: 's',
    language: 'en',
    model: 'm',
    promptVersion: 'v1',
    cached: false,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0
  }
}

/** The rollups recomputed from the insights, against the stored ones (rows at zero aside). */
async function rollupsMatchInsights(t: Test, database: Database, what: string) {
  const diff = async (stored: string, recomputed: string, cols: string) => {
    const rows = await database.query<{ n: number }>(
      sql.raw(`SELECT count(*)::int AS n FROM (
        (SELECT ${cols} FROM ${stored} WHERE n <> 0 EXCEPT ${recomputed})
        UNION ALL (${recomputed} EXCEPT SELECT ${cols} FROM ${stored} WHERE n <> 0)) AS d`)
    )
    return Number(rows[0]!.n)
  }
  const day = `(created_at AT TIME ZONE 'UTC')::date`
  const topicsOf = 'insights AS i, LATERAL (SELECT DISTINCT topic FROM unnest(i.topics) AS topic) AS t'
  t.equal(
    await diff(
      'insight_rollups',
      `SELECT ${day} AS day, source, sentiment, urgency, intent, count(*)::bigint AS n, round(sum(sentiment_score::float8)::numeric, 6) AS s FROM insights GROUP BY 1, 2, 3, 4, 5`,
      'day, source, sentiment, urgency, intent, n, round(score_sum::numeric, 6)'
    ),
    0,
    `${what}: insight_rollups equal the insights`
  )
  t.equal(
    await diff(
      'insight_rollups_narrow',
      `SELECT ${day} AS day, source, sentiment, urgency, count(*)::bigint AS n, round(sum(sentiment_score::float8)::numeric, 6) AS s FROM insights GROUP BY 1, 2, 3, 4`,
      'day, source, sentiment, urgency, n, round(score_sum::numeric, 6)'
    ),
    0,
    `${what}: insight_rollups_narrow equal the insights`
  )
  t.equal(
    await diff(
      'insight_topic_rollups',
      `SELECT ${day} AS day, t.topic, source, sentiment, urgency, intent, count(*)::bigint AS n FROM ${topicsOf} GROUP BY 1, 2, 3, 4, 5, 6`,
      'day, topic, source, sentiment, urgency, intent, n'
    ),
    0,
    `${what}: insight_topic_rollups equal the insights`
  )
  t.equal(
    await diff(
      'insight_topic_totals',
      `SELECT ${day} AS day, source, t.topic, count(*)::bigint AS n FROM ${topicsOf} GROUP BY 1, 2, 3`,
      'day, source, topic, n'
    ),
    0,
    `${what}: insight_topic_totals equal the insights`
  )
}

interface Stored {
  at: number
  i: NewInsight
}

/** What the summary must answer, counted in JavaScript from the stored insights. */
function expected(rows: Stored[], f: InsightFilters, now: number) {
  const match = (x: Stored, since?: number, until?: number) =>
    (f.source === undefined || x.i.source === f.source) &&
    (f.sentiment === undefined || x.i.sentiment === f.sentiment) &&
    (f.urgency === undefined || x.i.urgency === f.urgency) &&
    (f.intent === undefined || x.i.intent === f.intent) &&
    (f.topic === undefined || x.i.topics.includes(f.topic)) &&
    (since === undefined || x.at >= since) &&
    (until === undefined || x.at < until)
  const since = f.since?.getTime()
  const until = f.until?.getTime()
  const cur = rows.filter((x) => match(x, since, until))
  const prevRange = since === undefined ? undefined : [since - Math.max(0, (until ?? now) - since), since]
  const prev = prevRange ? rows.filter((x) => match(x, prevRange[0], prevRange[1])) : undefined
  const count = <K extends string>(xs: Stored[], key: (x: Stored) => K[]) => {
    const m = new Map<K, number>()
    for (const x of xs) for (const k of key(x)) m.set(k, (m.get(k) ?? 0) + 1)
    return m
  }
  const topicsOf = (x: Stored) => (f.topic !== undefined ? [f.topic] : x.i.topics)
  const curTopics = count(cur, topicsOf)
  const prevTopics = prev ? count(prev, topicsOf) : undefined
  const bySentiment = (xs: Stored[]) => Object.fromEntries(SENTIMENTS.map((s) => [s, xs.filter((x) => x.i.sentiment === s).length]))
  return {
    total: cur.length,
    by_sentiment: bySentiment(cur),
    by_urgency: Object.fromEntries(URGENCIES.map((u) => [u, cur.filter((x) => x.i.urgency === u).length])),
    top_topics: [...curTopics.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, 10)
      .map(([topic, n]) => ({ topic, count: n, previous_count: prevTopics ? (prevTopics.get(topic) ?? 0) : null })),
    by_day: [...count(cur, (x) => [new Date(x.at).toISOString().slice(0, 10)]).entries()].sort().map(([day, n]) => ({ day, count: n })),
    by_source: [...count(cur, (x) => [x.i.source]).entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .map(([source, n]) => ({ source, count: n })),
    previous_total: prev ? prev.length : null,
    previous_by_sentiment: prev ? bySentiment(prev) : null
  }
}

for (const backend of backends()) {
  t.test(`${backend}: rollups`, async (t) => {
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    const repo = insightsRepository(database)
    t.beforeEach(async () => {
      await database.query(sql`TRUNCATE conversations, conversation_keys, conversation_queue, insights`)
    })

    /** n random insights stored as the worker stores them, then spread over five days at odd times. */
    const fixture = async (n: number, seed: number): Promise<Stored[]> => {
      const r = rng(seed)
      const ids = await claimedIds(database, n, 'w1', `f${seed}`)
      const items = ids.map((id) => randomInsight(r, id))
      await repo.storeMany(items, 'w1')
      const at = items.map(() => BASE + Math.floor(r() * 5 * DAY))
      await database.query(sql`UPDATE insights SET created_at = v.at
        FROM unnest(${pgArray(ids)}::uuid[], ${pgArray(at.map((x) => new Date(x).toISOString()))}::timestamptz[]) AS v(id, at) WHERE conversation_id = v.id`)
      return items.map((i, k) => ({ i, at: at[k]! }))
    }

    t.test('summaries equal a count of the insights for every filter and range', async (t) => {
      const rows = await fixture(120, 7)
      await rollupsMatchInsights(t, database, 'after storing and moving in time')
      const now = BASE + 4 * DAY + 7 * 3_600_000 + 123
      const at = (ms: number) => new Date(ms)
      const ranges: [string, Pick<InsightFilters, 'since' | 'until'>][] = [
        ['everything', {}],
        ['whole days', { since: at(BASE + DAY), until: at(BASE + 3 * DAY) }],
        ['odd edges', { since: at(BASE + DAY + 5_000_123), until: at(BASE + 3 * DAY + 40_000_000) }],
        ['late since, late until (an edge read as its day minus the rest)', { since: at(BASE + DAY + 70_000_000), until: at(BASE + 3 * DAY + 80_000_000) }],
        ['inside one day', { since: at(BASE + 2 * DAY + 1_000), until: at(BASE + 2 * DAY + 50_000_000) }],
        ['open end, odd since', { since: at(BASE + 2 * DAY + 3_600_000) }],
        ['open end, midnight since', { since: at(BASE + 3 * DAY) }],
        ['open start, odd until', { until: at(BASE + 2 * DAY + 7) }]
      ]
      const filters: [string, InsightFilters][] = [
        ['no filter', {}],
        ['source', { source: 'email' }],
        ['sentiment', { sentiment: 'negative' }],
        ['urgency + intent', { urgency: 'high', intent: 'question' }],
        ['topic', { topic: 'billing' }],
        ['topic + source + sentiment', { topic: 'refund', source: 'web-chat', sentiment: 'positive' }]
      ]
      for (const [rangeName, range] of ranges) {
        for (const [filterName, f] of filters) {
          const got = await repo.summary({ ...f, ...range }, at(now))
          const want = expected(rows, { ...f, ...range }, now)
          t.same(
            {
              ...got,
              by_day: got.by_day.map(({ day, count }) => ({ day, count })),
              by_source: got.by_source.map(({ source, count }) => ({ source, count }))
            },
            want,
            `${filterName}, ${rangeName}`
          )
        }
      }
    })

    t.test('averages from the rollups equal avg() over the stored scores', async (t) => {
      await fixture(40, 11)
      const s = await repo.summary({})
      const byDay = await database.query<{ day: string; avg: number }>(
        sql`SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, avg(sentiment_score)::float8 AS avg FROM insights GROUP BY 1 ORDER BY 1`
      )
      t.same(
        s.by_day.map((d) => [d.day, d.avg_sentiment]),
        byDay.map((r) => [r.day, Math.round(Number(r.avg) * 1000) / 1000])
      )
    })

    t.test('a conversation erased during its analysis gets no insight, and the rest of the batch is stored', async (t) => {
      const r = rng(9)
      const ids = await claimedIds(database, 4, 'w1', 'race')
      await erasureRepository(database).erase({ kind: 'id', id: ids[1]! }, 'test', [])
      const { stored } = await repo.storeMany(
        ids.map((id) => randomInsight(r, id)),
        'w1'
      )
      t.same([...stored].sort(), [ids[0], ids[2], ids[3]].sort())
      await rollupsMatchInsights(t, database, 'after the race')
    })

    t.test('rollups follow re-analysis and erasure', async (t) => {
      await fixture(60, 3)
      // re-analysis rewrites labels and topics of some insights
      await database.query(sql`UPDATE insights SET sentiment = 'positive', topics = ARRAY['login', 'login', 'app'], urgency = 'low'
        WHERE conversation_id IN (SELECT conversation_id FROM insights ORDER BY conversation_id LIMIT 20)`)
      await rollupsMatchInsights(t, database, 're-analysis')
      // erasure deletes conversations with their insights
      const erased = await database.query<{ id: string }>(sql`SELECT conversation_id AS id FROM insights ORDER BY conversation_id DESC LIMIT 25`)
      for (const { id } of erased) await erasureRepository(database).erase({ kind: 'id', id }, 'test', [])
      await rollupsMatchInsights(t, database, 'erasure')
      const left = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM insights`)
      t.equal((await repo.summary({})).total, Number(left[0]!.n), 'the summary counts what is left')
    })
  })
}

t.test('postgres: rollups are exact under concurrent workers on several instances', { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL' }, async (t) => {
  const env = await backendEnv(t, 'postgres')
  // four instances, each with its own pool, storing batches at the same time into the same day
  const INSTANCES = 4
  const BATCHES = 8
  const BATCH = 25
  const instances = await Promise.all(Array.from({ length: INSTANCES }, () => openDatabase(testConfig(env), pino({ level: 'silent' }))))
  t.teardown(() => Promise.all(instances.map((d) => d.close())))
  const work = instances.map(async (database, k) => {
    const repo = insightsRepository(database)
    const r = rng(100 + k)
    for (let b = 0; b < BATCHES; b++) {
      const owner = `instance-${k}`
      const ids = await claimedIds(database, BATCH, owner, `c${k}-${b}`)
      // two concurrent batches of one instance, as WORKER_CONCURRENCY runs them
      const half = Math.floor(BATCH / 2)
      await Promise.all([
        repo.storeMany(ids.slice(0, half).map((id) => randomInsight(r, id)), owner),
        repo.storeMany(ids.slice(half).map((id) => randomInsight(r, id)), owner)
      ])
    }
  })
  await Promise.all(work)
  const database = instances[0]!
  await rollupsMatchInsights(t, database, 'after concurrent stores')
  const total = await database.query<{ n: number }>(sql`SELECT sum(n)::int AS n FROM insight_rollups`)
  t.equal(Number(total[0]!.n), INSTANCES * BATCHES * BATCH, 'every stored insight counted once')
})

t.test('migration 0002 backfills the rollups from insights stored before it', async (t) => {
  for (const backend of backends()) {
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    // the database as 0001 left it: no rollups, no triggers
    for (const statement of [
      'DROP TABLE insight_rollups, insight_rollups_narrow, insight_topic_rollups, insight_topic_totals, erasures',
      'DROP TRIGGER insights_rollup_insert ON insights',
      'DROP TRIGGER insights_rollup_delete ON insights',
      'DROP TRIGGER insights_rollup_update ON insights',
      'DROP TRIGGER insights_rollup_truncate ON insights',
      'DROP FUNCTION insights_rollup_on_insert, insights_rollup_on_delete, insights_rollup_on_update, insights_rollup_on_truncate, insight_rollups_apply',
      'DROP TYPE insight_rollup_delta',
      'DROP INDEX conversations_metadata_gin'
    ])
      await database.query(sql.raw(statement))
    const r = rng(5)
    const ids = await claimedIds(database, 50, 'w1', `m-${backend}`)
    for (const id of ids) {
      const i = randomInsight(r, id)
      await database.query(sql`INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, topics, intent, urgency, summary, language, model, prompt_version, created_at)
        VALUES (${id}, ${i.source}, ${i.sentiment}, ${i.sentiment_score}, ${pgArray(i.topics)}::text[], ${i.intent}, ${i.urgency}, 's', 'en', 'm', 'v1', ${new Date(BASE + Math.floor(r() * 4 * DAY)).toISOString()}::timestamptz)`)
    }
    const statements = readFileSync(new URL('../../migrations/0002_rollups_and_erasure.sql', import.meta.url), 'utf8')
      .split('--> statement-breakpoint')
      .map((s) => s.trim())
      .filter(Boolean)
    for (const statement of statements) await database.query(sql.raw(statement))
    await rollupsMatchInsights(t, database, `${backend}: backfilled`)
    // and the triggers take over from there: a new insight is counted once
    const [id] = await claimedIds(database, 1, 'w1', `m2-${backend}`)
    await insightsRepository(database).storeMany([randomInsight(r, id!)], 'w1')
    await rollupsMatchInsights(t, database, `${backend}: stored after the migration`)
  }
})

t.test('a since near year 1 compares with a previous period that starts at year 1, not before', async (t) => {
  const database = await openDatabase(testConfig(await backendEnv(t, 'pglite')), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  const s = await insightsRepository(database).summary({ since: new Date('0001-06-01T00:00:00Z') }, new Date('2026-01-01T00:00:00Z'))
  t.equal(s.total, 0)
  t.equal(s.previous_total, 0)
})

t.test('a range ending at the last representable second is answered, not a 500', async (t) => {
  const database = await openDatabase(testConfig(await backendEnv(t, 'pglite')), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  const repo = insightsRepository(database)
  for (const f of [{ since: new Date('9999-12-31T23:59:59Z') }, { until: new Date('9999-12-31T23:59:59Z') }]) {
    t.equal((await repo.summary(f)).total, 0, JSON.stringify(f))
  }
})
