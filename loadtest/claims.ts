// npm run bench:claims: does a claim cost the same with 1,000,000 pending as with 10? Fills a
// database with CLAIMS_PENDING pending conversations (their queue rows too), then drains the
// head of the queue as workers do — claim CLAIMS_BATCH of the oldest, store (which deletes
// their queue rows) — CLAIMS_ROUNDS times, timing each claim statement; then the same on a
// database holding only a handful. Dead index entries at the head of the queue (rows just
// claimed and deleted) are what made claims slow at a deep backlog before: this drains
// through them on purpose.
//
//   DATABASE_URL (required, an admin URL)   CLAIMS_PENDING (1000000)   CLAIMS_ROUNDS (300)
//   CLAIMS_BATCH (100)   the big database is kept (gleaner_claims_<n>) and reused
import pg from 'pg'
import pino from 'pino'
import { loadConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/client.ts'
import { conversationsRepository } from '../src/db/conversations.ts'

const PENDING = Number(process.env.CLAIMS_PENDING ?? 1_000_000)
const ROUNDS = Number(process.env.CLAIMS_ROUNDS ?? 300)
const BATCH = Number(process.env.CLAIMS_BATCH ?? 100)
const ADMIN = process.env.DATABASE_URL
const FILL_CHUNK = 100_000
const log = (...a: unknown[]) => console.error('[claims]', ...a)

const FILL = `
  WITH c AS (
    INSERT INTO conversations (id, source, messages, text_hash, received_at)
    SELECT gleaner_uuidv7(t), 'web-chat',
           jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'My order ' || g || ' never arrived and nobody answers.')),
           md5(g::text), t
    FROM generate_series($1::int, $1::int + $2::int - 1) AS g, LATERAL (SELECT now() - interval '1 hour' + g * interval '1 millisecond' AS t) AS x
    RETURNING id, received_at
  )
  INSERT INTO conversation_queue (conversation_id, received_at, available_at) SELECT id, received_at, received_at FROM c`

async function database(name: string, pending: number): Promise<string> {
  const admin = new pg.Client({ connectionString: ADMIN })
  await admin.connect()
  if ((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 0) await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(ADMIN!)
  url.pathname = `/${name}`
  const db = await openDatabase(loadConfig({ DATABASE_URL: url.toString(), LOG_LEVEL: 'silent', DB_STATEMENT_TIMEOUT_MS: '0' }), pino({ level: 'silent' }))
  await db.close() // migrated
  const client = new pg.Client({ connectionString: url.toString() })
  await client.connect()
  const have = Number((await client.query("SELECT count(*) AS n FROM conversation_queue WHERE state = 'pending'")).rows[0].n)
  for (let first = have; first < pending; first += FILL_CHUNK) {
    await client.query(FILL, [first, Math.min(FILL_CHUNK, pending - first)])
    log(`${name}: ${Math.min(first + FILL_CHUNK, pending)} pending`)
  }
  await client.query('VACUUM ANALYZE conversation_queue')
  await client.end()
  return url.toString()
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!

/** ROUNDS claims of BATCH, each followed by what the store statement does to the queue. */
async function drainHead(url: string, rounds: number, refill: boolean) {
  const db = await openDatabase(loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }), pino({ level: 'silent' }))
  const repo = conversationsRepository(db)
  const times: number[] = []
  try {
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now()
      const rows = await repo.claimOldest(BATCH, 'bench-claims', 60)
      times.push(performance.now() - t0)
      if (rows.length === 0) break
      const ids = rows.map((r) => r.id)
      await db.raw('DELETE FROM conversation_queue WHERE conversation_id = ANY($1::uuid[])', [ids])
      // the small database would run dry: what was taken goes back, so every claim finds a full batch
      if (refill) {
        await db.raw(
          `INSERT INTO conversation_queue (conversation_id, received_at, available_at)
           SELECT id, received_at, received_at FROM conversations WHERE id = ANY($1::uuid[])`,
          [ids]
        )
      }
    }
  } finally {
    await db.close()
  }
  return { median: pct(times, 0.5), p95: pct(times, 0.95), max: Math.max(...times), n: times.length }
}

async function main() {
  if (!ADMIN) throw new Error('set DATABASE_URL to a PostgreSQL admin URL (durable: fsync on)')
  const bigUrl = await database(`gleaner_claims_${PENDING}`, PENDING)
  const smallUrl = await database('gleaner_claims_small_', BATCH + 10)
  const small = await drainHead(smallUrl, ROUNDS, true)
  log('small', small)
  const big = await drainHead(bigUrl, ROUNDS, false)
  log('big', big)
  const f = (x: number) => x.toFixed(2)
  console.log(`| pending | claims of ${BATCH} | median ms | p95 ms | max ms |\n|---:|---:|---:|---:|---:|`)
  console.log(`| ${BATCH + 10} | ${small.n} | ${f(small.median)} | ${f(small.p95)} | ${f(small.max)} |`)
  console.log(`| ${PENDING.toLocaleString('en-US')} | ${big.n} | ${f(big.median)} | ${f(big.p95)} | ${f(big.max)} |`)
  console.log(`\nmedian at ${PENDING.toLocaleString('en-US')} pending is ${(big.median / small.median).toFixed(2)}× the median at ${BATCH + 10}`)
  const admin = new pg.Client({ connectionString: ADMIN })
  await admin.connect()
  await admin.query('DROP DATABASE IF EXISTS gleaner_claims_small_ WITH (FORCE)')
  await admin.end()
}

await main()
