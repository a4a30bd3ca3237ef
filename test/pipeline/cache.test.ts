// The analysis cache stage (LRU in front of the analysis_cache table), on both back ends.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { analysisCacheRepository, type CacheEntry } from '../../src/db/analysis-cache.ts'
import { openDatabase } from '../../src/db/client.ts'
import type { ClaimedConversation } from '../../src/db/conversations.ts'
import { standalone } from '../../src/db/write-fragment.ts'
import type { InsightFields } from '../../src/domain.ts'
import { AnalysisCache, planFromCache } from '../../src/pipeline/cache.ts'
import { cacheKey, sha256 } from '../../src/pipeline/normalize.ts'
import { backendEnv, backends, freshPostgresUrl, testConfig } from '../helper.ts'

const insight = (summary: string): InsightFields => ({
  sentiment: 'negative',
  sentiment_score: -0.6,
  topics: ['billing'],
  intent: 'refund_request',
  urgency: 'medium',
  summary,
  language: 'en'
})

let seq = 0
const entry = (summary = 'charged twice') => {
  const key = cacheKey(sha256(`text ${process.pid} ${++seq}`), 'test-model', 'v1')
  return { key, model: 'test-model', promptVersion: 'v1', insight: insight(summary) }
}

/** The cache's clock: moved by the tests, so a TTL passes without waiting for it. */
const clock = { now: Date.now() }
const now = () => clock.now

for (const backend of backends()) {
  t.test(backend, async (t) => {
    // one database per back end, emptied before each test: opening PGlite takes seconds
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    t.beforeEach(async () => {
      await database.query(sql`TRUNCATE analysis_cache`)
    })
    const repo = analysisCacheRepository(database, now)
    /** What the store stage does with a batch's fresh answers: the table write (there carried by the store statement, alone here), then memory. */
    const put = async (c: AnalysisCache, entries: CacheEntry[]) => {
      const write = c.persistFragment(entries)
      if (write) {
        const { text, params } = standalone(write)
        await database.raw(text, params)
      }
      c.remember(entries)
    }
    const cache = (opts: { ttlSeconds?: number; lruSize?: number } = {}) =>
      new AnalysisCache(repo, { ttlSeconds: opts.ttlSeconds ?? 3600, lruSize: opts.lruSize ?? 100, now })
    const row = async (key: string) =>
      (await database.query<{ hits: number; expires_at: Date | string }>(sql`SELECT hits, expires_at FROM analysis_cache WHERE key = ${key}`))[0]

    t.test('a stored insight is found again by its key', async (t) => {
      const e = entry()
      const c = cache()
      await put(c, [e])
      const found = await c.lookup([e.key])
      t.same(found.get(e.key), e.insight)
      t.equal(found.size, 1)
    })

    t.test('a memory-only cache (the local analyzer\'s) serves from its LRU and never touches the table', async (t) => {
      const e = entry()
      const c = new AnalysisCache(repo, { ttlSeconds: 3600, lruSize: 100, persistent: false, now })
      await put(c, [e])
      t.same((await c.lookup([e.key])).get(e.key), e.insight, 'found again in memory')
      t.equal(await row(e.key), undefined, 'nothing written to the table')
      const other = entry()
      await put(cache(), [other]) // another analyzer's entry in the table
      t.equal((await c.lookup([other.key])).size, 0, 'and the table is not read')
      await c.flushHits()
      t.equal((await row(other.key))!.hits, 0, 'nor are hits written')
      t.equal(await c.purgeExpired(), 0)
    })

    t.test('an unknown key is a miss', async (t) => {
      const found = await cache().lookup([entry().key])
      t.equal(found.size, 0)
    })

    t.test('a hot key is answered from memory without the table', async (t) => {
      const e = entry()
      const c = cache()
      await put(c, [e])
      await database.query(sql`DELETE FROM analysis_cache`)
      t.same((await c.lookup([e.key])).get(e.key), e.insight, 'still found after the row is gone')
    })

    t.test('another cache over the same database finds the insight in the table', async (t) => {
      const e = entry()
      await put(cache(), [e])
      const fresh = cache()
      const found = await fresh.lookup([e.key, entry().key])
      t.same([...found.keys()], [e.key], 'only the stored key')
      t.same(found.get(e.key), e.insight)
    })

    t.test('with no LRU every lookup goes to the table', async (t) => {
      const e = entry()
      const c = cache({ lruSize: 0 })
      await put(c, [e])
      t.equal((await c.lookup([e.key])).size, 1)
      await database.query(sql`DELETE FROM analysis_cache`)
      t.equal((await c.lookup([e.key])).size, 0, 'nothing kept in memory')
    })

    t.test('storing a key again replaces its insight and its expiry', async (t) => {
      const e = entry('first answer')
      await put(cache(), [e])
      await database.query(sql`UPDATE analysis_cache SET expires_at = ${new Date(clock.now + 60_000)} WHERE key = ${e.key}`)
      await put(cache(), [{ ...e, insight: insight('second answer') }])
      t.same((await cache().lookup([e.key])).get(e.key)?.summary, 'second answer')
      const expires = new Date((await row(e.key))!.expires_at).getTime()
      t.equal(expires, clock.now + 3600 * 1000, 'expiry pushed out by the full TTL again')
    })

    t.test('an expired row in the table is a miss', async (t) => {
      const e = entry()
      await put(cache(), [e])
      await database.query(sql`UPDATE analysis_cache SET expires_at = ${new Date(clock.now - 1_000)} WHERE key = ${e.key}`)
      t.equal((await cache().lookup([e.key])).size, 0)
    })

    t.test('an entry is a miss once ttlSeconds have passed, in memory and in the table', async (t) => {
      const e = entry()
      const c = cache({ ttlSeconds: 60 })
      await put(c, [e])
      clock.now += 59_999
      t.equal((await c.lookup([e.key])).size, 1, 'fresh until its TTL')
      clock.now += 2
      t.equal((await c.lookup([e.key])).size, 0, 'the same cache: LRU entry expired too')
      t.equal((await cache({ ttlSeconds: 60 }).lookup([e.key])).size, 0, 'a fresh cache: table row expired')
    })

    t.test(
      'an entry read from the table is not reused in memory past the row’s expiry',
      async (t) => {
        const e = entry()
        await put(cache(), [e])
        await database.query(sql`UPDATE analysis_cache SET expires_at = ${new Date(clock.now + 1_000)} WHERE key = ${e.key}`)
        const reader = cache({ ttlSeconds: 3600 })
        t.equal((await reader.lookup([e.key])).size, 1, 'valid while the row is')
        clock.now += 1_001
        t.equal((await reader.lookup([e.key])).size, 0, 'expired with the row, though the cache’s own TTL is an hour')
      }
    )

    t.test('a TTL of 0 disables the cache: nothing stored, nothing found', async (t) => {
      const e = entry()
      const off = cache({ ttlSeconds: 0 })
      t.equal(off.enabled, false)
      await put(off, [e])
      const rows = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM analysis_cache`)
      t.equal(Number(rows[0]!.n), 0, 'no row written')
      await put(cache(), [e])
      t.equal((await off.lookup([e.key])).size, 0, 'a row another instance wrote is not read either')
      await off.flushHits()
    })

    t.test('flushHits adds every hit since the last flush to the hits column', async (t) => {
      const a = entry()
      const b = entry()
      const c = cache()
      await put(c, [a, b])
      await c.lookup([a.key])
      await c.lookup([a.key, b.key, entry().key])
      await c.lookup([a.key, a.key])
      t.equal((await row(a.key))!.hits, 0, 'nothing written before a flush')
      await c.flushHits()
      t.equal((await row(a.key))!.hits, 4, 'every found occurrence counts')
      t.equal((await row(b.key))!.hits, 1)
      await c.flushHits()
      t.equal((await row(a.key))!.hits, 4, 'a second flush with no new hits adds nothing')
      await c.lookup([b.key])
      await cache().lookup([b.key]).then(async () => c.flushHits())
      t.equal((await row(b.key))!.hits, 2, 'only this cache’s hits are flushed by it')
    })

    t.test('planFromCache: hits are served, each unknown text is analysed once, its twins follow it', async (t) => {
      const known = entry('known')
      const c = cache()
      await put(c, [known])
      const row = (id: string, key: string): ClaimedConversation => ({
        id,
        source: 'web-chat',
        messages: [{ role: 'user', content: key }],
        textHash: key,
        receivedAt: new Date(),
        attempts: 1
      })
      const fresh = entry().key
      const other = entry().key
      const rows = [row('a', fresh), row('b', known.key), row('c', fresh), row('d', other), row('e', known.key), row('f', fresh)]
      const plan = await planFromCache(c, rows, (r) => r.textHash)
      t.same(
        plan.hits.map((h) => h.row.id),
        ['b', 'e'],
        'both conversations of the cached text are hits'
      )
      t.same(plan.hits[0]?.insight, known.insight)
      t.same(
        plan.leaders.map((r) => r.id),
        ['a', 'd'],
        'the first of each unknown text leads'
      )
      t.same(
        plan.followers.map((r) => r.id),
        ['c', 'f'],
        'its twins follow'
      )
      t.equal(plan.keyOf.get('f'), fresh)
    })

    t.test('planFromCache of a batch the cache knows nothing of: every distinct text leads', async (t) => {
      const rows = [entry().key, entry().key].map(
        (key, i): ClaimedConversation => ({ id: `r${i}`, source: 's', messages: [], textHash: key, receivedAt: new Date(), attempts: 1 })
      )
      const plan = await planFromCache(cache(), rows, (r) => r.textHash)
      t.same([plan.hits.length, plan.leaders.length, plan.followers.length], [0, 2, 0])
    })

    t.test('the cache table is unlogged: derived data writes no WAL, and a crash may empty it', async (t) => {
      const [r] = await database.raw<{ p: string }>(`SELECT relpersistence::text AS p FROM pg_class WHERE relname = 'analysis_cache'`, [])
      t.equal(r?.p, 'u')
    })

    t.test('the expiry BRIN asks autovacuum for nothing: PGlite has none to take the requests', async (t) => {
      const [r] = await database.raw<{ am: string; opts: string | null }>(
        `SELECT am.amname AS am, c.reloptions::text AS opts FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'analysis_cache_expires_brin'`,
        []
      )
      t.same(r, { am: 'brin', opts: null })
    })

    t.test('purgeExpired deletes expired rows only', async (t) => {
      const old = entry()
      const live = entry()
      await put(cache(), [old, live])
      await database.query(sql`UPDATE analysis_cache SET expires_at = now() - interval '1 second' WHERE key = ${old.key}`)
      t.equal(await repo.purgeExpired(), 1)
      t.equal(await row(old.key), undefined)
      t.ok(await row(live.key))
    })
  })
}

// A look-up's plan must not depend on the statistics of the day. With the expiry in the
// prepared statement, the generic plan PostgreSQL settles on after five executions chose the
// expiry index while the table was young, then filtered every live row by key (bench:drain: a
// batch of 20 look-ups read 1,440 rows at 1,440 rows, and more as the cache grew). By key
// alone, a named statement's generic plan made while the table was empty was a sequential
// scan, kept as the table grew: the look-up is planned at every call now.
const noPostgres = !backends().includes('postgres') && 'needs DATABASE_URL'
t.test('postgres: a look-up reads the primary key, never the whole table, whatever the statistics', { skip: noPostgres }, async (t) => {
  const url = await freshPostgresUrl(t)
  // one connection, so the index counters read below are this session's, flushed on demand
  const database = await openDatabase(testConfig({ DATABASE_URL: url, DB_POOL_MAX: '1' }), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  const repo = analysisCacheRepository(database, now)
  // statistics taken on an almost empty table, then the table grows: what a young cache is
  await repo.putMany([entry()], 3600)
  await database.raw('ANALYZE analysis_cache', [])
  const scans = async () => {
    await database.raw('SELECT pg_stat_force_next_flush()', [])
    await database.raw('SELECT 1', []) // the flush happens when the session goes idle after a statement
    const rows = await database.raw<{ indexrelname: string; idx_scan: string }>(
      `SELECT indexrelname, idx_scan::text FROM pg_stat_user_indexes WHERE relname = 'analysis_cache'`,
      []
    )
    const [table] = await database.raw<{ seq_scan: string }>(`SELECT seq_scan::text FROM pg_stat_user_tables WHERE relname = 'analysis_cache'`, [])
    return { index: Object.fromEntries(rows.map((r) => [r.indexrelname, Number(r.idx_scan)])), seq: Number(table!.seq_scan) }
  }
  // look-ups while the cache is young: a generic plan made now would be a sequential scan,
  // and PostgreSQL keeps it until the table's statistics change (bench:drain: every look-up
  // of a 20,000-conversation drain read the whole growing table)
  for (let i = 0; i < 12; i++) await repo.getMany([entry().key])
  // big enough that reading the whole table costs more than twenty probes by any estimate
  const stored = Array.from({ length: 20_000 }, () => entry())
  for (let i = 0; i < stored.length; i += 1000) await repo.putMany(stored.slice(i, i + 1000), 3600)
  const before = await scans()
  for (let i = 0; i < 12; i++) {
    const keys = [...Array.from({ length: 19 }, () => entry().key), stored[i]!.key]
    t.equal((await repo.getMany(keys)).size, 1, `look-up ${i + 1} finds its one stored key`)
  }
  const after = await scans()
  t.ok(after.index.analysis_cache_pkey! - before.index.analysis_cache_pkey! >= 12, 'the primary key answered every look-up')
  t.equal(after.seq, before.seq, 'no look-up read the whole table')
})
