// npm run bench:scale: Gleaner's reads at production volume. Fills a PostgreSQL database with
// SCALE_ROWS analysed conversations and their insights over 90 days (generate_series, one
// chunk per statement; skewed sources, sentiments, urgencies, intents and topics as support
// traffic has them), then times every read route over real HTTP: list pages with each filter
// and the combination analysts use (topic + source + sentiment), a deep page, the summary
// (unfiltered, by source, one day, 7 days as the console asks, 90 days, combined filters),
// and reports disk per conversation.
//
//   DATABASE_URL=postgres://… npm run bench:scale
//   SCALE_ROWS (5000000)  conversations in the fixture; 20000000 is the documented large run
//   SCALE_DB              database name (default gleaner_scale_<rows>); kept, and reused when
//                         it already holds the rows, so the same fill serves a before and an
//                         after run (the after run applies newer migrations, backfills included)
//   SCALE_RUNS (7)        timed requests per route (3 when a request takes over a second)
//   SCALE_LAYOUT (monthly) where the fixture's rows live: `monthly`, one partition per month
//                         as a database has them once it has run past a month boundary since
//                         migration 0004 (ingest writes into this month's partition only);
//                         `single`, all in the partition 0004 made for everything up to next
//                         month, as an upgraded database has them until that boundary
//
// Run it on a durable PostgreSQL (fsync and synchronous_commit on): a throwaway one with
// fsync off hides every commit's cost.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { sql } from 'drizzle-orm'
import pg from 'pg'
import pino from 'pino'
import { request } from 'undici'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { type Database, openDatabase } from '../src/db/client.ts'
import { monthStart, PARTITIONED_TABLES, partitionsRepository, uuidAt } from '../src/db/partitions.ts'
import { COMMON_TOPICS, INTENTS, SENTIMENTS, URGENCIES } from '../src/domain.ts'
import { conversationFor } from './workload.ts'

const ROWS = Number(process.env.SCALE_ROWS ?? 5_000_000)
const LAYOUT = process.env.SCALE_LAYOUT ?? 'monthly'
if (LAYOUT !== 'monthly' && LAYOUT !== 'single') throw new Error(`SCALE_LAYOUT is monthly or single, not ${LAYOUT}`)
const DB_NAME = process.env.SCALE_DB ?? `gleaner_scale_${ROWS}${LAYOUT === 'single' ? '_single' : ''}`
const RUNS = Number(process.env.SCALE_RUNS ?? 7)
/** Rows per fill statement: quick, and small enough that one chunk's transaction stays modest. */
const FILL_CHUNK = 100_000
/** The fixture's span: the summary's longest common period (the console's 90 days). */
const SPAN_DAYS = 90
/** A request slower than this is timed fewer times: the figure is already clear. */
const SLOW_MS = 1_000
const ADMIN = process.env.DATABASE_URL
const log = (...a: unknown[]) => console.error('[scale]', ...a)

// Weights of a support desk's traffic: chat and email dominate, most contacts are not urgent,
// a few topics carry most conversations (Zipf-like through the power of random()).
const SOURCES = ['web-chat', 'email', 'phone', 'app-review', 'social']
const FILL_SQL = `
WITH c AS (
  INSERT INTO conversations (id, source, external_id, messages, metadata, text_hash, received_at)
  SELECT gleaner_uuidv7(t), src, 'scale-' || g,
         jsonb_build_array(
           jsonb_build_object('role', 'user', 'content', 'Hello, order ' || g || ' ' || repeat('was charged twice and the invoice shows the wrong amount, ', 6)),
           jsonb_build_object('role', 'agent', 'content', 'Sorry about that, I am looking into order ' || g || ' right now and will refund the duplicate charge.'),
           jsonb_build_object('role', 'user', 'content', 'Thanks, please also fix the invoice address.')),
         jsonb_build_object('customer_id', 'cust-' || (g % 200000), 'plan', (ARRAY['free','pro','enterprise'])[1 + g % 3]),
         md5(g::text), t
  FROM generate_series($1::int, $1::int + $2::int - 1) AS g,
       LATERAL (SELECT $3::timestamptz - (g::float8 / $4::float8) * interval '${SPAN_DAYS} days' AS t,
                       ($5::text[])[1 + floor(power(random(), 1.8) * cardinality($5::text[]))::int] AS src) AS x
  RETURNING id, source, external_id, received_at
), k AS (
  INSERT INTO conversation_keys (source, external_id, producer, conversation_id) SELECT source, external_id, '', id FROM c
)
INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, topics, intent, urgency, summary, language, model,
                      prompt_version, input_tokens, output_tokens, cost_usd, created_at)
SELECT id, source, s.sentiment,
       CASE s.sentiment WHEN 'positive' THEN 0.2 + r2 * 0.8 WHEN 'negative' THEN -0.2 - r2 * 0.8 ELSE r2 * 0.4 - 0.2 END,
       -- one to three topics; the subquery names the row's id, so it runs per row, not once
       ARRAY(SELECT DISTINCT ($6::text[])[1 + floor(power(random(), 2.2) * cardinality($6::text[]))::int]
             FROM generate_series(1, 1 + get_byte(decode(md5(id::text), 'hex'), 0) % 3) AS k),
       ($7::text[])[1 + floor(power(random(), 1.6) * cardinality($7::text[]))::int],
       ($8::text[])[1 + floor(power(random(), 1.5) * cardinality($8::text[]))::int],
       'Customer was charged twice for an order and asks for a refund and a corrected invoice.',
       'en', 'scale-model', 'v1', 300, 60, 0.0002, received_at
-- the laterals name the row's id so random() is drawn per row, not once for the statement
FROM c, LATERAL (SELECT random() + 0 * length(id::text) AS r1, random() + 0 * length(id::text) AS r2) AS r,
     LATERAL (SELECT ($9::text[])[1 + floor(power(r1, 1.3) * cardinality($9::text[]))::int] AS sentiment) AS s
`

async function ensureDatabase(): Promise<string> {
  if (!ADMIN) throw new Error('set DATABASE_URL to a PostgreSQL server (durable: fsync on)')
  const admin = new pg.Client({ connectionString: ADMIN })
  await admin.connect()
  const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [DB_NAME])
  if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DB_NAME}`)
  await admin.end()
  const url = new URL(ADMIN)
  url.pathname = `/${DB_NAME}`
  return url.toString()
}

async function fill(url: string): Promise<{ migrateMs: number; fillMs: number | null }> {
  const config = loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', DB_STATEMENT_TIMEOUT_MS: '0' })
  const t0 = performance.now()
  const database = await openDatabase(config, pino({ level: 'silent' })) // applies migrations (and their backfills)
  const migrateMs = performance.now() - t0
  const newest = new Date()
  try {
    if (LAYOUT === 'monthly') await monthlyLayout(database, newest.getTime())
  } finally {
    await database.close()
  }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const have = Number((await client.query('SELECT count(*) AS n FROM conversations')).rows[0].n)
    if (have >= ROWS) {
      log(`reusing ${have} conversations in ${DB_NAME}`)
      return { migrateMs, fillMs: null }
    }
    const t1 = performance.now()
    for (let first = have; first < ROWS; first += FILL_CHUNK) {
      const count = Math.min(FILL_CHUNK, ROWS - first)
      await client.query(FILL_SQL, [first, count, newest.toISOString(), ROWS, SOURCES, [...COMMON_TOPICS], [...INTENTS], [...URGENCIES], [...SENTIMENTS]])
      log(`filled ${first + count} / ${ROWS}`)
    }
    await client.query('VACUUM ANALYZE')
    return { migrateMs, fillMs: performance.now() - t1 }
  } finally {
    await client.end()
  }
}

/**
 * On a database with no rows yet, the partition migration 0004 made for everything up to next
 * month ends where the fixture's span begins instead, and the product's own maintenance step
 * makes the months from there on: the layout of a database that has run past a month
 * boundary since it migrated. Detaching and attaching an empty table costs no scan.
 */
async function monthlyLayout(database: Database, newestMs: number) {
  const repo = partitionsRepository(database)
  const parts = await repo.list()
  if (parts.length !== PARTITIONED_TABLES.length || parts.some((p) => p.from !== null)) return // laid out already
  const [row] = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM conversations`)
  if (Number(row?.n) > 0) return // a single-partition fill already began here: keep it as it is
  const firstMonth = monthStart(newestMs - SPAN_DAYS * 86_400_000)
  await database.transaction(async (tx) => {
    for (const p of parts) {
      await database.query(sql.raw(`ALTER TABLE "${p.table}" DETACH PARTITION "${p.name}"`), tx)
      await database.query(sql.raw(`ALTER TABLE "${p.table}" ATTACH PARTITION "${p.name}" FOR VALUES FROM (MINVALUE) TO ('${uuidAt(firstMonth)}')`), tx)
    }
  })
  const made = await repo.ensureAhead(newestMs, 1)
  log(`monthly layout: ${made.join(', ')}`)
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Batches (of 100) timed for ingest at size and on an empty database. */
const INGEST_BATCHES = 30

/**
 * Median ms of a 100-conversation batch POST (worker off) at size and on an empty database,
 * alternating batch by batch after a CHECKPOINT of both: timed one after the other, the fill's
 * dirty pages still being written and a busy machine's drift landed on whichever went first.
 */
async function ingestMedians(atSizeUrl: string, emptyUrl: string): Promise<{ atSize: number; empty: number }> {
  const open = (url: string) => buildApp(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', AUTH: 'off', WORKER_ENABLED: 'false', RATE_LIMIT_ANONYMOUS: '10000000' }))
  const apps = [await open(atSizeUrl), await open(emptyUrl)] as const
  try {
    const admin = new pg.Client({ connectionString: ADMIN })
    await admin.connect()
    await admin.query('CHECKPOINT')
    await admin.end()
    const times: number[][] = [[], []]
    // producers send their own ids (the fill's rows all have one): new ones each run, so a
    // reused database never answers these as duplicates
    let seq = Date.now() * 1000
    for (let i = 0; i <= INGEST_BATCHES; i++) {
      for (const [which, app] of apps.entries()) {
        const payload = { conversations: Array.from({ length: 100 }, () => conversationFor(++seq, { externalId: true })) }
        const t0 = performance.now()
        const res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload })
        if (res.statusCode !== 207) throw new Error(`ingest answered ${res.statusCode}`)
        if (i > 0) times[which]!.push(performance.now() - t0) // the first batch prepares statements
      }
    }
    return { atSize: median(times[0]!), empty: median(times[1]!) }
  } finally {
    await Promise.all(apps.map((a) => a.close()))
  }
}

/** Distinct heap pages per row among the newest `n` conversations of `partition`: 1 when every row went to a page of its own. */
async function pagesPerRow(client: pg.Client, partition: string, n: number): Promise<number> {
  const { rows } = await client.query(
    `SELECT count(DISTINCT (ctid::text::point)[0])::float8 / count(*) AS r FROM (SELECT ctid FROM ${partition} ORDER BY id DESC LIMIT ${n}) AS x`
  )
  return Number(rows[0].r)
}

/**
 * The fill's one VACUUM left a gap in every page of the partition ingest writes to (the
 * fill's rows are larger than a producer's), and the free space map sends each new row to the
 * next such page: one page read, and after a checkpoint one full-page image in the WAL, per
 * row. A live table's inserts fill the gaps each autovacuum records as they come. This adds
 * as many conversations as the partition has pages, through the batch route, so a second
 * timing shows ingest once the gaps are used; it reports how scattered each run's rows were.
 */
async function fillGaps(url: string): Promise<{ partition: string; rows: number; pages: number; rowsAdded: number; blocksPerRowBefore: number }> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const app = await buildApp(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', AUTH: 'off', WORKER_ENABLED: 'false', RATE_LIMIT_ANONYMOUS: '10000000' }))
  try {
    const partition = String((await client.query('SELECT tableoid::regclass::text AS p FROM conversations ORDER BY id DESC LIMIT 1')).rows[0].p)
    const blocksPerRowBefore = await pagesPerRow(client, partition, INGEST_BATCHES * 100)
    const rows = Number((await client.query(`SELECT count(*) AS n FROM ${partition}`)).rows[0].n)
    const pages = Number((await client.query('SELECT pg_relation_size($1::regclass) / 8192 AS n', [partition])).rows[0].n)
    // ids apart from the timed runs' (Date.now() * 1000 onward): never answered as duplicates
    let seq = 5e15 + Date.now()
    for (let added = 0; added < pages; added += 1000) {
      const payload = { conversations: Array.from({ length: 1000 }, () => conversationFor(++seq, { externalId: true })) }
      const res = await app.inject({ method: 'POST', url: '/api/v1/conversations/batch', payload })
      if (res.statusCode !== 207) throw new Error(`ingest answered ${res.statusCode}`)
    }
    return { partition, rows, pages, rowsAdded: Math.ceil(pages / 1000) * 1000, blocksPerRowBefore }
  } finally {
    await app.close()
    await client.end()
  }
}

/** From buildApp to a ready app with its worker running, at this size: the start-up an operator waits for. */
async function startupMs(url: string): Promise<number> {
  const t0 = performance.now()
  const app = await buildApp(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', AUTH: 'off', WORKER_ENABLED: 'true' }))
  await app.ready()
  const ms = performance.now() - t0
  await app.close()
  return ms
}

async function emptyDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `gleaner_scale_empty_${process.pid}`
  const admin = new pg.Client({ connectionString: ADMIN })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(ADMIN!)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: ADMIN })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    }
  }
}

async function main() {
  const url = await ensureDatabase()
  const { migrateMs, fillMs } = await fill(url)
  const app = await buildApp(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent', AUTH: 'off', WORKER_ENABLED: 'false', RATE_LIMIT_ANONYMOUS: '10000000' }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const base = `http://127.0.0.1:${port}`
  const results: { route: string; median_ms: number; max_ms: number; status: number }[] = []
  try {
    const day = 86_400_000
    const midnight = new Date(new Date().setUTCHours(0, 0, 0, 0))
    const iso = (d: Date) => encodeURIComponent(d.toISOString())
    const oneDay = `since=${iso(new Date(midnight.getTime() - 10 * day))}&until=${iso(new Date(midnight.getTime() - 9 * day))}`
    const week = `since=${iso(new Date(midnight.getTime() - 6 * day))}`
    const quarter = `since=${iso(new Date(midnight.getTime() - 89 * day))}`
    const combo = 'topic=billing&source=email&sentiment=negative'
    // page 50 of the unfiltered list: follow 49 cursors once, then time the 50th page
    let cursor: string | null = null
    for (let i = 0; i < 49; i++) {
      const page = `${base}/api/v1/insights?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
      const body = (await (await request(page)).body.json()) as { next_cursor: string | null }
      cursor = body.next_cursor
    }
    // one conversation from deep in the data, for the by-id route
    const deep = (await (await request(`${base}/api/v1/insights?limit=1&${oneDay}`)).body.json()) as { items: { conversation_id: string }[] }
    const someId = deep.items[0]?.conversation_id ?? '00000000-0000-7000-8000-000000000000'
    const routes: [string, string][] = [
      ['health (backlog counts)', '/health'],
      ['health/ready', '/health/ready'],
      ['conversation by id', `/api/v1/conversations/${someId}`],
      ['dead letters', '/api/v1/dead-letters'],
      ['usage', '/api/v1/usage'],
      ['taxonomy', '/api/v1/taxonomy'],
      ['list, first page', '/api/v1/insights'],
      ['list, page 50', `/api/v1/insights?cursor=${encodeURIComponent(cursor ?? '')}`],
      ['list, source', '/api/v1/insights?source=email'],
      ['list, sentiment', '/api/v1/insights?sentiment=negative'],
      ['list, topic', '/api/v1/insights?topic=billing'],
      ['list, topic+source+sentiment', `/api/v1/insights?${combo}`],
      ['list, one day', `/api/v1/insights?${oneDay}`],
      ['summary, unfiltered', '/api/v1/insights/summary'],
      ['summary, source', '/api/v1/insights/summary?source=email'],
      ['summary, one day', `/api/v1/insights/summary?${oneDay}`],
      ['summary, 7 days (console)', `/api/v1/insights/summary?${week}`],
      ['summary, 90 days', `/api/v1/insights/summary?${quarter}`],
      ['summary, topic+source+sentiment', `/api/v1/insights/summary?${combo}`],
      ['summary, 7 days, topic+source+sentiment', `/api/v1/insights/summary?${week}&${combo}`]
    ]
    for (const [name, path] of routes) {
      const times: number[] = []
      let status = 0
      for (let i = 0; i <= RUNS; i++) {
        const t0 = performance.now()
        const res = await request(`${base}${path}`)
        await res.body.dump()
        const ms = performance.now() - t0
        status = res.statusCode
        if (i > 0) times.push(ms) // the first request warms caches and prepares statements
        if (ms > SLOW_MS && times.length >= 3) break
      }
      results.push({ route: name, median_ms: Math.round(median(times) * 10) / 10, max_ms: Math.round(Math.max(...times) * 10) / 10, status })
      log(name, results[results.length - 1])
    }
  } finally {
    await app.close()
  }
  const startMs = await startupMs(url)
  log('start-up with the worker', Math.round(startMs), 'ms')
  const empty = await emptyDatabase()
  let first: Awaited<ReturnType<typeof ingestMedians>>
  let afterGaps: typeof first
  let gaps: Awaited<ReturnType<typeof fillGaps>> & { blocksPerRowAfter: number }
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    first = await ingestMedians(url, empty.url)
    log('ingest of 100, median ms: at size', first.atSize, 'empty', first.empty)
    const filled = await fillGaps(url)
    log('gaps filled', filled)
    afterGaps = await ingestMedians(url, empty.url)
    log('ingest of 100 once the gaps are used, median ms: at size', afterGaps.atSize, 'empty', afterGaps.empty)
    gaps = { ...filled, blocksPerRowAfter: await pagesPerRow(client, filled.partition, INGEST_BATCHES * 100) }
  } finally {
    await empty.drop()
  }
  const { atSize, empty: onEmpty } = first
  const bytes = Number((await client.query('SELECT pg_database_size(current_database()) AS b')).rows[0].b)
  await client.end()
  const report = {
    rows: ROWS,
    database: DB_NAME,
    layout: LAYOUT,
    migrate_ms: Math.round(migrateMs),
    fill_ms: fillMs === null ? null : Math.round(fillMs),
    bytes_per_conversation: Math.round(bytes / ROWS),
    startup_with_worker_ms: Math.round(startMs),
    rows_in_ingest_partition: gaps.rows,
    ingest_batch_of_100_ms: { at_size: Math.round(atSize * 10) / 10, empty: Math.round(onEmpty * 10) / 10 },
    gaps,
    ingest_batch_of_100_ms_after_gaps: { at_size: Math.round(afterGaps.atSize * 10) / 10, empty: Math.round(afterGaps.empty * 10) / 10 },
    routes: results
  }
  console.log('| route | median ms | max ms | status |\n|---|---:|---:|---:|')
  for (const r of results) console.log(`| ${r.route} | ${r.median_ms} | ${r.max_ms} | ${r.status} |`)
  console.log(`\nmigrate ${report.migrate_ms} ms, fill ${report.fill_ms ?? 'reused'} ms, ${report.bytes_per_conversation} bytes per conversation`)
  console.log(`start-up with the worker ${report.startup_with_worker_ms} ms`)
  console.log(`ingest, batch of 100 (median of ${INGEST_BATCHES}): ${report.ingest_batch_of_100_ms.at_size} ms at ${ROWS.toLocaleString('en-US')}, ${report.ingest_batch_of_100_ms.empty} ms on an empty database (${(atSize / onEmpty).toFixed(2)}x), ${LAYOUT} layout, ${gaps.rows.toLocaleString('en-US')} rows in the partition written to`)
  console.log(
    `ingest once the ${gaps.rowsAdded.toLocaleString('en-US')} rows that fill those gaps are in: ${report.ingest_batch_of_100_ms_after_gaps.at_size} ms at size, ${report.ingest_batch_of_100_ms_after_gaps.empty} ms empty (${(afterGaps.atSize / afterGaps.empty).toFixed(2)}x); the first run's rows went to ${gaps.blocksPerRowBefore.toFixed(2)} pages a row, the second's to ${gaps.blocksPerRowAfter.toFixed(2)}`
  )
  const out = fileURLToPath(new URL(`./results/scale-${ROWS}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url))
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`)
  log(`wrote ${out}`)
}

await main()
