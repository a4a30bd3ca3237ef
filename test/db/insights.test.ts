// The insights repository: storing with the conversation's status, analyst lists and summary.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t, { type Test } from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { conversationsRepository } from '../../src/db/conversations.ts'
import { type Cursor, type InsightFilters, type InsightRow, insightsRepository, type NewInsight } from '../../src/db/insights.ts'
import type { Intent, Sentiment, Urgency } from '../../src/domain.ts'
import { sha256 } from '../../src/pipeline/normalize.ts'
import { backendEnv, backends, testConfig } from '../helper.ts'

let seq = 0

const newInsight = (conversationId: string, over: Partial<NewInsight> = {}): NewInsight => ({
  conversationId,
  source: 'web-chat',
  sentiment: 'negative',
  sentiment_score: -0.5,
  topics: ['billing'],
  intent: 'refund_request',
  urgency: 'high',
  summary: 'Customer was charged twice.',
  language: 'en',
  model: 'test-model',
  promptVersion: 'v1',
  cached: false,
  inputTokens: 120,
  outputTokens: 40,
  costUsd: 0.0012,
  ...over
})

/** The analyst's fixture: what each insight says and the day it was made. */
interface Spec {
  source: string
  sentiment: Sentiment
  score: number
  urgency: Urgency
  intent: Intent
  topics: string[]
  day: string
}
const SPECS: Spec[] = [
  { source: 'web-chat', sentiment: 'negative', score: -0.8, urgency: 'high', intent: 'refund_request', topics: ['billing', 'refund'], day: '2026-01-01' },
  { source: 'web-chat', sentiment: 'negative', score: -0.4, urgency: 'medium', intent: 'complaint', topics: ['billing'], day: '2026-01-01' },
  { source: 'email', sentiment: 'positive', score: 0.9, urgency: 'low', intent: 'praise', topics: ['support'], day: '2026-01-01' },
  { source: 'email', sentiment: 'neutral', score: 0, urgency: 'low', intent: 'question', topics: ['shipping', 'billing'], day: '2026-01-02' },
  { source: 'web-chat', sentiment: 'mixed', score: 0.1, urgency: 'medium', intent: 'question', topics: ['shipping'], day: '2026-01-02' },
  { source: 'phone', sentiment: 'negative', score: -1, urgency: 'high', intent: 'cancellation', topics: [], day: '2026-01-02' },
  { source: 'phone', sentiment: 'positive', score: 0.5, urgency: 'low', intent: 'praise', topics: ['support', 'app'], day: '2026-01-03' },
  { source: 'web-chat', sentiment: 'negative', score: -0.6, urgency: 'high', intent: 'bug_report', topics: ['app', 'login'], day: '2026-01-03' },
  { source: 'email', sentiment: 'neutral', score: 0.2, urgency: 'medium', intent: 'question', topics: ['billing'], day: '2026-01-03' }
]

for (const backend of backends()) {
  t.test(backend, async (t) => {
    // one database per back end, emptied before each test: opening PGlite takes seconds
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    const conversations = conversationsRepository(database)
    const repo = insightsRepository(database)
    t.beforeEach(async () => {
      await database.query(sql`TRUNCATE conversations, conversation_keys, conversation_queue, insights`)
    })

    /** n conversations claimed by owner, as the worker holds them before storing insights */
    const claimed = async (n: number, owner = 'w1', source = 'web-chat') => {
      const rows = await conversations.insertMany(
        Array.from({ length: n }, () => {
          seq++
          return {
            producer: '',
            source,
            externalId: `ext-${seq}`,
            messages: [{ role: 'user' as const, content: `message ${seq} about my bill` }],
            textHash: sha256(`t${seq}`),
            status: 'pending' as const
          }
        })
      )
      const ids = rows.map((r) => r.id)
      await conversations.claimByIds(ids, owner, 60)
      return ids
    }
    const status = async (id: string) => (await conversations.getById(id))!

    /** stores SPECS and sets each insight's created_at to its day; returns rows by spec index */
    const storeFixture = async () => {
      const ids = await claimed(SPECS.length)
      await repo.storeMany(
        SPECS.map((s, i) =>
          newInsight(ids[i]!, { source: s.source, sentiment: s.sentiment, sentiment_score: s.score, urgency: s.urgency, intent: s.intent, topics: s.topics })
        ),
        'w1'
      )
      for (const [i, s] of SPECS.entries()) {
        // distinct ms within a day, so order is by time; two share one instant to exercise the id tie-break
        const ms = i === 1 ? 0 : i
        await database.query(sql`UPDATE insights SET created_at = ${`${s.day}T12:00:00.00${ms}Z`}::timestamptz WHERE conversation_id = ${ids[i]}`)
      }
      return ids
    }

    const listAll = async (t: Test, filters: InsightFilters, pageSize: number) => {
      const seen: InsightRow[] = []
      let cursor: Cursor | undefined
      for (let page = 0; page < 100; page++) {
        const { items, next } = await repo.list(filters, pageSize, cursor)
        t.ok(items.length <= pageSize, 'a page is never longer than its limit')
        seen.push(...items)
        if (!next) break
        t.equal(items.length, pageSize, 'only the last page is short')
        cursor = next
      }
      return seen
    }

    t.test('storeMany stores insights and marks their conversations analysed', async (t) => {
      const [a, b] = await claimed(2)
      const result = await repo.storeMany([newInsight(a!), newInsight(b!, { sentiment: 'positive', sentiment_score: 0.75, topics: [] })], 'w1')
      t.same([...result.stored].sort(), [a, b].sort())
      for (const id of [a!, b!]) {
        const c = await status(id)
        t.match(c, { status: 'analyzed', attempts: 1, lastError: null, analyzedAt: Date })
        t.equal(await conversations.queueEntry(id), null, 'no work left in the queue')
      }
      const row = await repo.getByConversation(b!)
      t.match(row, {
        conversationId: b,
        source: 'web-chat',
        sentiment: 'positive',
        sentiment_score: 0.75,
        topics: [],
        intent: 'refund_request',
        urgency: 'high',
        language: 'en',
        model: 'test-model',
        promptVersion: 'v1',
        cached: false,
        inputTokens: 120,
        outputTokens: 40,
        costUsd: 0.0012,
        attempts: 1,
        createdAt: Date
      })
      t.equal(row!.createdAt.getTime(), (await status(b!)).analyzedAt!.getTime(), 'made at the moment the conversation was analysed')
      t.same((await repo.getMany([a!, b!])).length, 2)
      t.same(await repo.getMany([]), [])
      t.same(await repo.storeMany([], 'w1'), { stored: [] }, 'nothing in, nothing stored')
    })

    t.test('storing the same conversation again inserts nothing and returns no id', async (t) => {
      const [id] = await claimed(1)
      t.same(await repo.storeMany([newInsight(id!, { summary: 'first' })], 'w1'), { stored: [id] })
      t.same(await repo.storeMany([newInsight(id!, { summary: 'second', sentiment: 'positive' })], 'w1'), { stored: [] })
      const row = await repo.getByConversation(id!)
      t.equal(row?.summary, 'first', 'the first insight stays')
      t.equal(row?.sentiment, 'negative')
      const n = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM insights`)
      t.equal(Number(n[0]!.n), 1)
    })

    t.test('storeMany stores only for the conversations this owner still holds', async (t) => {
      const [mine] = await claimed(1, 'w1')
      const [theirs] = await claimed(1, 'w2')
      const [released] = await claimed(1, 'w1')
      await conversations.releaseClaims([released!], 'w1')
      const result = await repo.storeMany([newInsight(mine!), newInsight(theirs!), newInsight(released!)], 'w1')
      t.same(result.stored, [mine], 'a lease lost (to another owner, or handed back) stores nothing: its holder stores it')
      t.equal((await status(mine!)).status, 'analyzed')
      t.equal(await conversations.queueEntry(mine!), null, 'its queue row is gone with the same statement')
      t.match(await status(theirs!), { status: 'processing', analyzedAt: null, insight: null })
      t.match(await conversations.queueEntry(theirs!), { leaseOwner: 'w2' })
      t.match(await status(released!), { status: 'pending', analyzedAt: null })
      t.same(await repo.storeMany([newInsight(theirs!)], 'w2'), { stored: [theirs] }, 'the holder stores it')
      t.equal((await status(theirs!)).status, 'analyzed')
    })

    t.test('storeMany is atomic: a failing insert marks no conversation', async (t) => {
      const [id, other] = await claimed(2)
      // a NOT NULL column left empty fails the insert (a conversation erased meanwhile no longer does: it is skipped)
      await t.rejects(repo.storeMany([newInsight(id!), newInsight(other!, { summary: null as unknown as string })], 'w1'))
      t.equal(await repo.getByConversation(id!), null, 'no insight')
      t.equal((await status(id!)).status, 'processing', 'the conversation is untouched')
    })

    t.test('list returns newest first and each filter keeps exactly the matching insights', async (t) => {
      const ids = await storeFixture()
      const order = (idx: number[]) =>
        idx
          .map((i) => ({ id: ids[i]!, at: `${SPECS[i]!.day}${i === 1 ? 0 : i}` }))
          .sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1))
          .map((r) => r.id)
      const where = (pred: (s: Spec) => boolean) => order(SPECS.flatMap((s, i) => (pred(s) ? [i] : [])))
      const cases: [string, InsightFilters, string[]][] = [
        ['no filter', {}, where(() => true)],
        ['source', { source: 'email' }, where((s) => s.source === 'email')],
        ['sentiment', { sentiment: 'negative' }, where((s) => s.sentiment === 'negative')],
        ['topic', { topic: 'billing' }, where((s) => s.topics.includes('billing'))],
        ['intent', { intent: 'question' }, where((s) => s.intent === 'question')],
        ['urgency', { urgency: 'low' }, where((s) => s.urgency === 'low')],
        ['since (inclusive)', { since: new Date('2026-01-02T12:00:00.003Z') }, where((s) => s.day >= '2026-01-02')],
        ['until (exclusive)', { until: new Date('2026-01-02T12:00:00.003Z') }, where((s) => s.day < '2026-01-02')],
        [
          'since and until',
          { since: new Date('2026-01-02T00:00:00Z'), until: new Date('2026-01-03T00:00:00Z') },
          where((s) => s.day === '2026-01-02')
        ],
        [
          'several filters together',
          { source: 'web-chat', sentiment: 'negative', topic: 'billing' },
          where((s) => s.source === 'web-chat' && s.sentiment === 'negative' && s.topics.includes('billing'))
        ],
        ['a filter nothing matches', { topic: 'nonexistent' }, []]
      ]
      for (const [name, filters, expected] of cases) {
        const { items, next } = await repo.list(filters, 100)
        t.same(
          items.map((r) => r.conversationId),
          expected,
          name
        )
        t.equal(next, undefined, `${name}: one page`)
      }
      t.ok(where((s) => s.topics.includes('billing')).length > 1, 'the fixture makes every filter choose')
    })

    t.test('keyset pages cover every insight exactly once, in order, with and without filters', async (t) => {
      // 23 insights stored together share one created_at: only the id orders them
      const ids = await claimed(23)
      await repo.storeMany(
        ids.map((id, i) => newInsight(id, { source: i % 3 === 0 ? 'email' : 'web-chat' })),
        'w1'
      )
      const everything = (await repo.list({}, 1000)).items.map((r) => r.conversationId)
      t.same(everything, [...ids].sort().reverse(), 'ties on created_at are ordered by id, newest first')
      for (const size of [1, 4, 23, 50]) {
        const seen = await listAll(t, {}, size)
        t.same(
          seen.map((r) => r.conversationId),
          everything,
          `page size ${size}`
        )
      }
      const emails = await listAll(t, { source: 'email' }, 3)
      t.same(
        emails.map((r) => r.conversationId),
        ids.filter((_, i) => i % 3 === 0).sort().reverse(),
        'filtered pages'
      )
    })

    t.test('keyset pages stay exact across insights with different created_at', async (t) => {
      const ids = await storeFixture()
      const all = (await repo.list({}, 100)).items.map((r) => r.conversationId)
      t.equal(all.length, ids.length)
      for (const size of [1, 2, 5]) {
        t.same(
          (await listAll(t, {}, size)).map((r) => r.conversationId),
          all,
          `page size ${size}`
        )
      }
    })

    t.test('summary counts totals, sentiments, urgencies, topics and days', async (t) => {
      await storeFixture()
      const s = await repo.summary({})
      t.equal(s.total, SPECS.length)
      t.same(s.by_sentiment, { positive: 2, neutral: 2, negative: 4, mixed: 1 })
      t.same(s.by_urgency, { low: 3, medium: 3, high: 3 })
      t.same(s.top_topics, [
        { topic: 'billing', count: 4, previous_count: null },
        { topic: 'app', count: 2, previous_count: null },
        { topic: 'shipping', count: 2, previous_count: null },
        { topic: 'support', count: 2, previous_count: null },
        { topic: 'login', count: 1, previous_count: null },
        { topic: 'refund', count: 1, previous_count: null }
      ])
      const avg = (day: string) => {
        const xs = SPECS.filter((x) => x.day === day).map((x) => x.score)
        return Math.round((xs.reduce((a, b) => a + b, 0) / xs.length) * 1000) / 1000
      }
      t.same(s.by_day, [
        { day: '2026-01-01', count: 3, avg_sentiment: avg('2026-01-01') },
        { day: '2026-01-02', count: 3, avg_sentiment: avg('2026-01-02') },
        { day: '2026-01-03', count: 3, avg_sentiment: avg('2026-01-03') }
      ])
      const avgOf = (source: string) => {
        const xs = SPECS.filter((x) => x.source === source).map((x) => x.score)
        return Math.round((xs.reduce((a, b) => a + b, 0) / xs.length) * 1000) / 1000
      }
      t.same(s.by_source, [
        { source: 'web-chat', count: 4, avg_sentiment: avgOf('web-chat') },
        { source: 'email', count: 3, avg_sentiment: avgOf('email') },
        { source: 'phone', count: 2, avg_sentiment: avgOf('phone') }
      ])
    })

    t.test('with since, each top topic carries its count in the period of the same length before', async (t) => {
      await storeFixture()
      // current period: 2026-01-03 (one day up to `until`); previous: 2026-01-02
      const s = await repo.summary({ since: new Date('2026-01-03T00:00:00Z'), until: new Date('2026-01-04T00:00:00Z') })
      t.same(s.top_topics, [
        { topic: 'app', count: 2, previous_count: 0 },
        { topic: 'billing', count: 1, previous_count: 1 },
        { topic: 'login', count: 1, previous_count: 0 },
        { topic: 'support', count: 1, previous_count: 0 }
      ])
      t.equal(s.total, 3, 'totals still count only the current period')
      // without until the period ends now (injected): 01-02 to 01-04 against 12-31 to 01-02
      const open = await repo.summary({ since: new Date('2026-01-02T00:00:00Z') }, new Date('2026-01-04T00:00:00Z'))
      t.same(
        open.top_topics.find((x) => x.topic === 'billing'),
        { topic: 'billing', count: 2, previous_count: 2 },
        'billing: two in each period'
      )
      const filtered = await repo.summary({ source: 'email', since: new Date('2026-01-03T00:00:00Z'), until: new Date('2026-01-04T00:00:00Z') })
      t.same(filtered.top_topics, [{ topic: 'billing', count: 1, previous_count: 1 }], 'other filters apply to both periods')
    })

    t.test('summary applies the same filters as list', async (t) => {
      await storeFixture()
      const s = await repo.summary({ source: 'web-chat', since: new Date('2026-01-02T00:00:00Z') })
      t.equal(s.total, 2)
      t.same(s.by_sentiment, { positive: 0, neutral: 0, negative: 1, mixed: 1 })
      t.same(s.by_urgency, { low: 0, medium: 1, high: 1 })
      t.same(
        s.top_topics.map(({ topic, count }) => ({ topic, count })),
        [
          { topic: 'app', count: 1 },
          { topic: 'login', count: 1 },
          { topic: 'shipping', count: 1 }
        ]
      )
      t.same(
        s.by_day.map((d) => d.day),
        ['2026-01-02', '2026-01-03']
      )
      const topic = await repo.summary({ topic: 'billing' })
      t.equal(topic.total, 4)
      t.equal(topic.top_topics[0]?.topic, 'billing')
    })

    t.test('summary of nothing is zeros, with every sentiment and urgency present', async (t) => {
      t.same(await repo.summary({}), {
        total: 0,
        by_sentiment: { positive: 0, neutral: 0, negative: 0, mixed: 0 },
        by_urgency: { low: 0, medium: 0, high: 0 },
        top_topics: [],
        by_day: [],
        by_source: [],
        previous_total: null,
        previous_by_sentiment: null
      })
    })

    t.test('top_topics keeps the ten most frequent', async (t) => {
      const ids = await claimed(12)
      // topic-k appears k+1 times across the insights
      await repo.storeMany(
        ids.map((id, i) => newInsight(id, { topics: Array.from({ length: 12 }, (_, k) => `topic-${String(k).padStart(2, '0')}`).filter((_, k) => i <= k) })),
        'w1'
      )
      const s = await repo.summary({})
      t.equal(s.top_topics.length, 10)
      t.same(s.top_topics[0], { topic: 'topic-11', count: 12, previous_count: null })
      t.same(s.top_topics[9], { topic: 'topic-02', count: 3, previous_count: null })
    })
  })
}
