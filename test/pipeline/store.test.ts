// The store stage: which insight each conversation of a batch gets and which fail (pure),
// then the write on a real database: insights, statuses, the cache and the usage, in one statement;
// and the group commit of those statements (group-store.ts).
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
import { ClaimGroup, GroupStore, mergeSpent, siblingWaitMs } from '../../src/pipeline/group-store.ts'
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

/** A fresh in-memory database with the repositories the store writes through. */
async function storeDatabase(t: { teardown(fn: () => unknown): void }) {
  const database = await openDatabase(testConfig({ DATA_DIR: 'memory://' }), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  const conversations = conversationsRepository(database)
  const usage = usageRepository(database)
  let n = 0
  return {
    database,
    conversations,
    insights: insightsRepository(database),
    cacheRepo: analysisCacheRepository(database),
    usage,
    spentBy: async (model: string) => (await usage.report()).find((r) => r.model === model),
    /** `size` new pending conversations, claimed by `owner` */
    claimed: async (size: number, owner: string) => {
      const rows = Array.from({ length: size }, () => {
        const messages = [{ role: 'user' as const, content: `Conversation ${n++} ${Math.random()}: my order is late` }]
        return { producer: '', source: 'web-chat', messages, textHash: textHash(messages), status: 'pending' as const }
      })
      await conversations.insertMany(rows)
      return conversations.claimOldest(size, owner, 60)
    }
  }
}

t.test('storeOutcome on a real database', async (t) => {
  const { database, conversations, insights, cacheRepo, usage, spentBy, claimed } = await storeDatabase(t)

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

t.test('ClaimGroup: the batches of one claim wait for one another before they store', async (t) => {
  t.test('a batch waits until every sibling has arrived', async (t) => {
    const group = new ClaimGroup(3, performance.now() - 10_000) // claimed long ago: waits up to the cap
    const [a, b, c] = [group.member(), group.member(), group.member()]
    let released = false
    const waiting = a.arriveAndWait().then(() => {
      released = true
    })
    b.arrive()
    b.arrive() // twice counts once
    await new Promise((r) => setImmediate(r))
    t.equal(released, false, 'one sibling is still analysing')
    c.arrive() // it failed: it stores nothing, but holds no one back
    const first = await Promise.race([waiting.then(() => 'released'), new Promise((r) => setImmediate(() => r('still waiting')))])
    t.equal(first, 'released', 'at once, not at the deadline')
    t.ok(released)
  })

  t.test('a sibling that never arrives holds the others a tenth of their own time, 250 ms at most', async (t) => {
    t.equal(siblingWaitMs(300), 30, 'a 300 ms model call waits up to 30 ms')
    t.equal(siblingWaitMs(60_000), 250, 'a minute-long call no more than the cap')
    t.equal(siblingWaitMs(-1), 0)
    const group = new ClaimGroup(2, performance.now() - 50)
    await group.member().arriveAndWait() // resolves although the other never arrives
    t.pass('released by the deadline')
  })

  t.test('a claim of one batch does not wait at all', async (t) => {
    const waiting = new ClaimGroup(1, performance.now() - 10_000).member().arriveAndWait()
    const first = await Promise.race([waiting.then(() => 'released'), new Promise((r) => setImmediate(() => r('still waiting')))])
    t.equal(first, 'released')
  })
})

t.test('mergeSpent: one usage row per model, summed', async (t) => {
  const u = (model: string, calls: number) => ({ model, calls, input: calls * 10, output: calls, costUsd: calls / 100 })
  t.same(mergeSpent([[u('a', 1), u('b', 2)], [], [u('a', 3)]]), [
    { model: 'a', calls: 4, input: 40, output: 4, costUsd: 0.04 },
    { model: 'b', calls: 2, input: 20, output: 2, costUsd: 0.02 }
  ])
})

t.test('GroupStore on a real database', async (t) => {
  const { database, insights: realInsights, cacheRepo, usage, spentBy, claimed } = await storeDatabase(t)
  // the real repository, with each store statement's size recorded
  const statements: number[] = []
  // while set, a statement waits for it before it goes to the database
  let hold: Promise<void> | undefined
  // while set, every statement fails with it before reaching the database
  let failWith: Error | undefined
  const insights = {
    ...realInsights,
    storeMany: async (items: Parameters<typeof realInsights.storeMany>[0], ...rest: [string, Parameters<typeof realInsights.storeMany>[2]?]) => {
      statements.push(items.length)
      await hold
      if (failWith) throw failWith
      return realInsights.storeMany(items, ...rest)
    }
  }
  const batch = async (size: number, owner = 'w1', key = (id: string) => `gk-${id}`) => {
    const rows = await claimed(size, owner)
    return assembleOutcome(
      { keyOf: new Map(rows.map((r) => [r.id, key(r.id)])), hits: [], leaders: rows, followers: [] },
      new Map(rows.map((r) => [r.id, ok(r.id, `group ${r.id}`)])),
      analyzer
    )
  }
  const ids = (o: { insights: { conversationId: string }[] }) => o.insights.map((i) => i.conversationId).sort()
  const turn = () => new Promise((resolve) => setImmediate(resolve))

  t.beforeEach(() => {
    statements.length = 0
  })

  t.test('batches that finish while a store is in flight share the next statement, and each learns its own ids', async (t) => {
    const observed: number[] = []
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 3600, lruSize: 0 }), usage }, 'w1', {
      observe: (batches) => observed.push(batches)
    })
    const [a, b, c] = [await batch(2), await batch(3), await batch(1)]
    const spend = { model: 'model-g', calls: 1, input: 30, output: 10, costUsd: 0.001 }
    let release: () => void = () => {}
    hold = new Promise((r) => {
      release = r
    })
    t.teardown(() => {
      hold = undefined
    })
    const first = stores.store(a, [spend])
    await turn() // its statement is in flight now, held until released
    const done = [first, stores.store(b, [spend]), stores.store(c, [spend])]
    await turn()
    t.same(statements, [2], 'b and c wait while a is written')
    release()
    const [sa, sb, sc] = await Promise.all(done)
    t.same(statements, [2, 4], 'the first alone, the two that waited together')
    t.same(observed, [1, 2], 'each statement observed with the batches it carried')
    t.same([sa!.sort(), sb!.sort(), sc!.sort()], [ids(a), ids(b), ids(c)])
    t.equal((await realInsights.getMany([...ids(a), ...ids(b), ...ids(c)])).length, 6)
    t.match(await spentBy('model-g'), { calls: 3, inputTokens: 90, costUsd: 0.003 }, 'every batch’s spend booked once')
  })

  t.test('batches stored in one turn of the event loop share one statement (siblings of a claim)', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const batches = [await batch(2), await batch(2), await batch(1)]
    const stored = await Promise.all(batches.map((o) => stores.store(o)))
    t.same(statements, [5])
    t.same(stored.map((s) => s.sort()), batches.map(ids))
  })

  t.test('each batch hears when the statement carrying it is sent, not before: one waiting behind a write keeps its slot', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const [a, b] = [await batch(1), await batch(1)]
    const sent: string[] = []
    let release: () => void = () => {}
    hold = new Promise((r) => {
      release = r
    })
    t.teardown(() => {
      hold = undefined
    })
    const first = stores.store(a, [], () => sent.push('a'))
    t.same(sent, [], 'nothing sent within the turn that queued it')
    await turn()
    t.same(sent, ['a'])
    const second = stores.store(b, [], () => sent.push('b'))
    await turn()
    t.same(sent, ['a'], 'b waits while a is written')
    release()
    await Promise.all([first, second])
    t.same(sent, ['a', 'b'])
  })

  t.test('a group stays under its insight limit: the batch that would pass it waits for the next statement', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1', { maxInsights: 4 })
    const batches = [await batch(1), await batch(2), await batch(2), await batch(3)]
    await Promise.all(batches.map((o) => stores.store(o)))
    t.same(statements, [3, 2, 3], 'in order, each group as large as fits under four')
  })

  t.test('two batches that analysed the same text write its cache row once', async (t) => {
    const cache = new AnalysisCache(cacheRepo, { ttlSeconds: 3600, lruSize: 0 })
    const stores = new GroupStore({ insights, cache, usage }, 'w1')
    const same = () => 'gk-shared-text'
    const batches = [await batch(1), await batch(1, 'w1', same), await batch(1, 'w1', same)]
    const stored = await Promise.all(batches.map((o) => stores.store(o)))
    t.same(statements, [3], 'merged, although one statement may not upsert a key twice')
    t.same(stored.map((s) => s.length), [1, 1, 1])
    t.equal((await cache.lookup(['gk-shared-text'])).size, 1)
  })

  t.test('a group that fails is retried batch by batch: the bad batch fails alone, the others are stored', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const [first, good, bad] = [await batch(1), await batch(2), await batch(1)]
    bad.insights[0]!.summary = null as unknown as string // NOT NULL: its statement fails
    const spend = (model: string) => [{ model, calls: 1, input: 5, output: 1, costUsd: 0.01 }]
    const results = await Promise.allSettled([stores.store(first), stores.store(good, spend('model-good')), stores.store(bad, spend('model-bad'))])
    t.same(statements, [4, 1, 2, 1], 'the group, then each batch alone')
    t.equal(results[0].status, 'fulfilled')
    t.same(results[1].status === 'fulfilled' && results[1].value.sort(), ids(good))
    t.equal(results[2].status, 'rejected', 'the bad batch learns its write failed (the worker then books its spend apart)')
    t.equal(await realInsights.getByConversation(bad.insights[0]!.conversationId), null)
    t.match(await spentBy('model-good'), { calls: 1 }, 'the good batch’s spend booked once, by its own retry')
    t.equal(await spentBy('model-bad'), undefined, 'the failed batch’s spend not booked by the store')
  })

  t.test('a group whose database went away fails every batch at once, with no retries one by one', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const batches = [await batch(1), await batch(2)]
    failWith = Object.assign(new Error('Connection terminated unexpectedly'), { code: '08006' })
    t.teardown(() => {
      failWith = undefined
    })
    const results = await Promise.allSettled(batches.map((o) => stores.store(o)))
    t.same(
      results.map((r) => r.status),
      ['rejected', 'rejected']
    )
    t.same(statements, [3], 'one statement tried: each batch then books its spend and hands its rows back itself')
  })

  t.test('a conversation carried by two batches goes in once and is told to the first', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const a = await batch(2)
    // our own lease ran out and we claimed the row again in a later batch
    const again = { ...a, insights: [a.insights[1]!] }
    const [sa, sAgain] = await Promise.all([stores.store(a), stores.store(again)])
    t.same(statements, [2])
    t.same(sa!.sort(), ids(a))
    t.same(sAgain, [])
  })

  t.test('abort rejects the batches still waiting; the statement in flight goes on', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const [a, b] = [await batch(1), await batch(1)]
    let release: () => void = () => {}
    hold = new Promise((r) => {
      release = r
    })
    t.teardown(() => {
      hold = undefined
    })
    const first = stores.store(a)
    await turn()
    const second = stores.store(b)
    stores.abort(new Error('shutting down'))
    await t.rejects(second, /shutting down/)
    await t.rejects(stores.store(await batch(1)), /shutting down/, 'a batch arriving after the abort is refused too')
    release()
    t.same(await first, ids(a))
    t.same(statements, [1])
    stores.resume() // the worker started again
    const c = await batch(1)
    t.same(await stores.store(c), ids(c))
  })

  t.test('a batch whose lease was lost is not stored; the batches beside it are', async (t) => {
    const stores = new GroupStore({ insights, cache: new AnalysisCache(cacheRepo, { ttlSeconds: 0, lruSize: 0 }), usage }, 'w1')
    const [first, lost, kept] = [await batch(1), await batch(1), await batch(2)]
    await database.query(sql`UPDATE conversation_queue SET lease_owner = 'w2' WHERE conversation_id = ${lost.insights[0]!.conversationId}`)
    const [, sLost, sKept] = await Promise.all([stores.store(first), stores.store(lost), stores.store(kept)])
    t.same(statements, [4])
    t.same(sLost, [])
    t.same(sKept!.sort(), ids(kept))
  })
})
