// The store stage: which insight each conversation of a batch gets and which fail (pure),
// then the write on a real database: insights, statuses, the cache and the usage, in one statement.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import type { ItemResult } from '../../src/analyzers/analyzer.ts'
import { analysisCacheRepository } from '../../src/db/analysis-cache.ts'
import { openDatabase } from '../../src/db/client.ts'
import { type ClaimedConversation, conversationsRepository } from '../../src/db/conversations.ts'
import { insightsRepository } from '../../src/db/insights.ts'
import { usageRepository } from '../../src/db/usage.ts'
import type { InsightFields } from '../../src/domain.ts'
import { AnalysisCache, type CachePlan } from '../../src/pipeline/cache.ts'
import { textHash } from '../../src/pipeline/normalize.ts'
import { assembleOutcome, storeOutcome } from '../../src/pipeline/store.ts'
import { testConfig } from '../helper.ts'

const analyzer = { model: 'model-x', promptVersion: 'v9' }
const fields = (summary: string): InsightFields => ({
  sentiment: 'negative',
  sentiment_score: -0.5,
  topics: ['billing'],
  intent: 'complaint',
  urgency: 'medium',
  summary,
  language: 'en'
})
const row = (id: string): ClaimedConversation => ({
  id,
  source: 'web-chat',
  messages: [{ role: 'user', content: id }],
  textHash: id,
  receivedAt: new Date(),
  attempts: 1
})
const ok = (id: string, summary: string): ItemResult => ({
  id,
  ok: true,
  insight: fields(summary),
  tokens: { input: 30, output: 10 },
  cost_usd: 0.001
})

/** leaders a, b, c; a hit h; followers fa (of a) and fb (of b) */
function plan(): CachePlan {
  return {
    keyOf: new Map([
      ['a', 'ka'],
      ['b', 'kb'],
      ['c', 'kc'],
      ['h', 'kh'],
      ['fa', 'ka'],
      ['fb', 'kb']
    ]),
    hits: [{ row: row('h'), insight: fields('cached') }],
    leaders: [row('a'), row('b'), row('c')],
    followers: [row('fa'), row('fb')]
  }
}

t.test('assembleOutcome', async (t) => {
  t.test('fresh insights carry their tokens and go to the cache; hits and followers are cached and free', async (t) => {
    const results = new Map([
      ['a', ok('a', 'analysed a')],
      ['b', ok('b', 'analysed b')],
      ['c', ok('c', 'analysed c')]
    ])
    const out = assembleOutcome(plan(), results, analyzer)
    t.same(out.failures, [])
    const by = new Map(out.insights.map((i) => [i.conversationId, i]))
    t.same([...by.keys()].sort(), ['a', 'b', 'c', 'fa', 'fb', 'h'])
    t.match(by.get('a'), { summary: 'analysed a', cached: false, inputTokens: 30, outputTokens: 10, costUsd: 0.001, model: 'model-x', promptVersion: 'v9' })
    t.match(by.get('h'), { summary: 'cached', cached: true, inputTokens: 0, costUsd: 0 })
    t.match(by.get('fa'), { summary: 'analysed a', cached: true, inputTokens: 0 }, 'a follower takes its leader’s insight')
    t.same(
      out.fresh.map((f) => [f.key, f.insight.summary]),
      [
        ['ka', 'analysed a'],
        ['kb', 'analysed b'],
        ['kc', 'analysed c']
      ]
    )
  })

  t.test('a failed leader fails with its reason, and so do its followers; a missing result is internal', async (t) => {
    const results = new Map<string, ItemResult>([
      ['a', { id: 'a', ok: false, error: 'no valid insight', retryable: true, reason: 'invalid_output' }],
      ['b', { id: 'b', ok: false, error: 're-ask timed out', retryable: true, reason: 'timeout' }]
      // c: the analyzer gave no result at all
    ])
    const out = assembleOutcome(plan(), results, analyzer)
    t.same(
      out.failures.map((f) => [f.row.id, f.reason]).sort(),
      [
        ['a', 'invalid_output'],
        ['b', 'timeout'],
        ['c', 'internal'],
        ['fa', 'invalid_output'],
        ['fb', 'timeout']
      ]
    )
    t.same(
      out.insights.map((i) => i.conversationId),
      ['h'],
      'only the hit is stored'
    )
    t.same(out.fresh, [])
  })

  t.test('an analyzer failure without a reason counts as internal', async (t) => {
    const results = new Map<string, ItemResult>([['a', { id: 'a', ok: false, error: 'local analysis failed', retryable: false }]])
    const out = assembleOutcome({ ...plan(), leaders: [row('a')], followers: [], hits: [] }, results, analyzer)
    t.match(out.failures, [{ reason: 'internal', error: 'local analysis failed' }])
  })

  t.test('only the insight’s own fields are kept from what an analyzer or the cache hands over', async (t) => {
    const extra = { ...fields('with extras'), debug: 'not a column' } as InsightFields
    const out = assembleOutcome({ ...plan(), leaders: [], followers: [], hits: [{ row: row('h'), insight: extra }] }, new Map(), analyzer)
    t.notOk('debug' in out.insights[0]!)
  })
})

t.test('storeOutcome on a real database', async (t) => {
  const database = await openDatabase(testConfig({ DATA_DIR: 'memory://' }), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  const conversations = conversationsRepository(database)
  const insights = insightsRepository(database)
  const cacheRepo = analysisCacheRepository(database)
  const usage = usageRepository(database)
  const spentBy = async (model: string) => (await usage.report()).find((r) => r.model === model)

  const claimed = async (n: number, owner: string) => {
    const messages = (i: number) => [{ role: 'user' as const, content: `Conversation ${i} ${Math.random()}: my order is late` }]
    const rows = Array.from({ length: n }, (_, i) => ({ producer: '', source: 'web-chat', messages: messages(i), textHash: textHash(messages(i)), status: 'pending' as const }))
    await conversations.insertMany(rows)
    return conversations.claimOldest(n, owner, 60)
  }

  t.test('stores the insights, marks their rows analysed and writes the cache', async (t) => {
    const rows = await claimed(2, 'w1')
    const cache = new AnalysisCache(cacheRepo, { ttlSeconds: 3600, lruSize: 0 })
    const out = assembleOutcome(
      { keyOf: new Map(rows.map((r) => [r.id, `key-${r.id}`])), hits: [], leaders: rows, followers: [] },
      new Map(rows.map((r) => [r.id, ok(r.id, `summary ${r.id}`)])),
      analyzer
    )
    const stored = await storeOutcome({ insights, cache, usage }, out, 'w1')
    t.same([...stored].sort(), rows.map((r) => r.id).sort())
    for (const r of rows) {
      t.equal((await conversations.getById(r.id))?.status, 'analyzed')
      t.match(await insights.getByConversation(r.id), { summary: `summary ${r.id}`, model: 'model-x', cached: false })
    }
    t.equal((await cache.lookup(rows.map((r) => `key-${r.id}`))).size, 2, 'both in the cache')
  })

  t.test('a row whose lease went to another owner is not stored by this one', async (t) => {
    const rows = await claimed(1, 'w1')
    // its lease ran out and another instance claimed it
    await database.query(sql`UPDATE conversation_queue SET lease_expires_at = now() - interval '1 second' WHERE conversation_id = ${rows[0]!.id}`)
    await conversations.reclaimExpired(5)
    await conversations.claimByIds([rows[0]!.id], 'w2', 60)
    const out = assembleOutcome(
      { keyOf: new Map([[rows[0]!.id, 'k']]), hits: [], leaders: rows, followers: [] },
      new Map([[rows[0]!.id, ok(rows[0]!.id, 'late')]]),
      analyzer
    )
    const cache = new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 })
    t.same(await storeOutcome({ insights, cache, usage }, out, 'w1'), [], 'nothing stored')
    t.equal((await conversations.getById(rows[0]!.id))?.status, 'processing', 'still the other owner’s')
    t.equal(await insights.getByConversation(rows[0]!.id), null, 'no insight: its holder will store one')
  })

  t.test('the usage of the batch’s model calls commits with its insights', async (t) => {
    const rows = await claimed(1, 'w1')
    const cache = new AnalysisCache(cacheRepo, { ttlSeconds: 3600, lruSize: 0 })
    const out = assembleOutcome(
      { keyOf: new Map([[rows[0]!.id, 'k-usage']]), hits: [], leaders: rows, followers: [] },
      new Map([[rows[0]!.id, ok(rows[0]!.id, 'booked')]]),
      analyzer
    )
    const spent = [{ model: 'model-u', calls: 1, input: 30, output: 10, costUsd: 0.001 }]
    t.same(await storeOutcome({ insights, cache, usage }, out, 'w1', spent), [rows[0]!.id])
    t.match(await spentBy('model-u'), { calls: 1, inputTokens: 30, outputTokens: 10, costUsd: 0.001 })
    t.equal((await cache.lookup(['k-usage'])).size, 1, 'and the cache row')
  })

  t.test('a batch whose lease was lost still books what its calls spent', async (t) => {
    const rows = await claimed(1, 'w1')
    await database.query(sql`UPDATE conversation_queue SET lease_owner = 'w2' WHERE conversation_id = ${rows[0]!.id}`)
    const cache = new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 })
    const out = assembleOutcome(
      { keyOf: new Map([[rows[0]!.id, 'k-lost']]), hits: [], leaders: rows, followers: [] },
      new Map([[rows[0]!.id, ok(rows[0]!.id, 'late')]]),
      analyzer
    )
    t.same(await storeOutcome({ insights, cache, usage }, out, 'w1', [{ model: 'model-l', calls: 1, input: 5, output: 1, costUsd: 0.01 }]), [])
    t.match(await spentBy('model-l'), { calls: 1, costUsd: 0.01 })
  })

  t.test('a store that fails writes nothing: no insight, no cache row, no usage (the worker books that apart)', async (t) => {
    const rows = await claimed(1, 'w1')
    const cache = new AnalysisCache(cacheRepo, { ttlSeconds: 3600, lruSize: 10 })
    const out = assembleOutcome(
      { keyOf: new Map([[rows[0]!.id, 'k-fail']]), hits: [], leaders: rows, followers: [] },
      new Map([[rows[0]!.id, ok(rows[0]!.id, 'never')]]),
      analyzer
    )
    out.insights[0]!.summary = null as unknown as string // NOT NULL: the statement fails
    await t.rejects(storeOutcome({ insights, cache, usage }, out, 'w1', [{ model: 'model-f', calls: 1, input: 5, output: 1, costUsd: 0.01 }]))
    t.equal(await insights.getByConversation(rows[0]!.id), null)
    t.equal((await cache.lookup(['k-fail'])).size, 0, 'neither in the table nor in memory')
    t.equal(await spentBy('model-f'), undefined)
  })
})
