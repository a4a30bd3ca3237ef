// npm run bench:drain: where a drained conversation's CPU goes. Fills a backlog with the
// worker off, then lets a fresh server drain it and reads, between "ready" and "drained":
//  - CPU of the server process and of every PostgreSQL process (postmaster, backends,
//    WAL writer, checkpointer, autovacuum; /proc, so the same clock for both),
//  - each statement's calls, rows and execution time (pg_stat_statements, when the server
//    preloads it), and WAL bytes (pg_stat_wal),
// all per analysed conversation. The written budget is loadtest/DRAIN-BUDGET.md.
//
//   DATABASE_URL (required)  an admin URL; a database is made and dropped for the run
//   DRAIN_N (50000)          backlog size
//   DRAIN_ANALYZER (local)   local | model (the fake model server at DRAIN_MODEL_LATENCY_MS)
//   DRAIN_BATCH (100), DRAIN_CONCURRENCY (2)   the model's batch and concurrency; REDACT_PII passes through
//   DRAIN_ROLLUPS (on)       off disables the rollup trigger for the drain, to price it (the
//                            run's rollups are then wrong, and the database is dropped anyway)
//   DRAIN_CACHE (on)         off runs without the analysis cache (CACHE_TTL_SECONDS=0), to price
//                            its look-up and its rows
import { sql } from 'drizzle-orm'
import type { Database } from '../src/db/client.ts'
import { cpuMs, postgresCpuMs, postmasterPid } from './bench/cpu.ts'
import { fillBacklog, waitDrained } from './bench/load.ts'
import { startServer, withProc } from './bench/processes.ts'
import { PG_ADMIN, withDatabase, withTarget } from './bench/targets.ts'
import { startFakeModelServer } from './fake-model-server.ts'

const N = Number(process.env.DRAIN_N ?? 50_000)
const ANALYZER = process.env.DRAIN_ANALYZER ?? 'local'
const MODEL_LATENCY_MS = Number(process.env.DRAIN_MODEL_LATENCY_MS ?? 300)
// bench:peers sends 20 a model call at concurrency 8: DRAIN_BATCH=20 DRAIN_CONCURRENCY=8 reproduces it
const MODEL_BATCH = process.env.DRAIN_BATCH ?? '100'
const MODEL_CONCURRENCY = process.env.DRAIN_CONCURRENCY ?? '2'
const ROLLUPS = process.env.DRAIN_ROLLUPS ?? 'on'
if (ROLLUPS !== 'on' && ROLLUPS !== 'off') throw new Error(`DRAIN_ROLLUPS is on or off, not ${ROLLUPS}`)
// DRAIN_CACHE=off: no analysis cache (CACHE_TTL_SECONDS=0), to read what its look-up and rows cost
const CACHE = process.env.DRAIN_CACHE ?? 'on'
if (CACHE !== 'on' && CACHE !== 'off') throw new Error(`DRAIN_CACHE is on or off, not ${CACHE}`)
const log = (...a: unknown[]) => console.error('[drain]', ...a)

const count = async (db: Database) => Number((await db.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM insights`))[0]!.n)

interface Statement {
  query: string
  calls: number
  rows: number
  ms: number
}

async function main() {
  if (!PG_ADMIN) throw new Error('bench:drain measures PostgreSQL: set DATABASE_URL to an admin URL')
  const fake = ANALYZER === 'model' ? await startFakeModelServer({ latencyMs: MODEL_LATENCY_MS, port: 0 }) : null
  const env: Record<string, string> = {
    ...(fake
      ? { MODEL_PROVIDER: 'openai-compatible', MODEL_BASE_URL: fake.url, MODEL_NAME: 'fake-1', BATCH_MAX: MODEL_BATCH, BATCH_INITIAL: MODEL_BATCH, WORKER_CONCURRENCY: MODEL_CONCURRENCY, ...(process.env.REDACT_PII ? { REDACT_PII: process.env.REDACT_PII } : {}) }
      : {}),
    ...(CACHE === 'off' ? { CACHE_TTL_SECONDS: '0' } : {})
  }
  try {
    await withTarget('budget', async (target) => {
      await withProc(
        () => startServer({ ...target.env, ...env, WORKER_ENABLED: 'false' }),
        (s) => fillBacklog(s.url, N)
      )
      log(`backlog of ${N} filled`)
      await withDatabase(target, async (db) => {
        const statements = await db
          .query(sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
          .then(() => db.query(sql`SELECT pg_stat_statements_reset()`))
          .then(() => true)
          .catch((err) => {
            log(`no statement figures (${(err as Error).message}); start PostgreSQL with shared_preload_libraries=pg_stat_statements`)
            return false
          })
        if (ROLLUPS === 'off') await db.query(sql`ALTER TABLE insights DISABLE TRIGGER insights_rollup_insert`)
        await db.query(sql`CHECKPOINT`)
        const pm = await postmasterPid(db)
        const [settings] = await db.query<{ fsync: string; sc: string }>(sql`SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc`)
        const wal = async () => Number((await db.query<{ b: string }>(sql`SELECT wal_bytes::text AS b FROM pg_stat_wal`))[0]!.b)

        const result = await withProc(
          () => startServer({ ...target.env, ...env }),
          async (s) => {
            const n0 = await count(db)
            const [server0, pg0, wal0, t0] = [cpuMs(s.pid), postgresCpuMs(pm), await wal(), Date.now()]
            await waitDrained(s.url)
            const [server1, pg1, wal1, t1] = [cpuMs(s.pid), postgresCpuMs(pm), await wal(), Date.now()]
            const n = (await count(db)) - n0
            return { n, serverMs: server1 - server0, pgMs: pg1 - pg0, walBytes: wal1 - wal0, seconds: (t1 - t0) / 1000 }
          }
        )
        let top: Statement[] = []
        if (statements) {
          top = (
            await db.query<{ query: string; calls: string; rows: string; ms: number }>(sql`
              SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::text, rows::text, total_exec_time::float8 AS ms
              FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              ORDER BY total_exec_time DESC LIMIT 15`)
          ).map((r) => ({ query: r.query, calls: Number(r.calls), rows: Number(r.rows), ms: r.ms }))
        }
        print({ ...result, fsync: settings!.fsync, synchronousCommit: settings!.sc, top })
      })
    })
  } finally {
    await fake?.close()
  }
}

function print(r: { n: number; serverMs: number; pgMs: number; walBytes: number; seconds: number; fsync: string; synchronousCommit: string; top: Statement[] }) {
  const per = (x: number) => (r.n ? x / r.n : 0)
  const ms = (x: number) => per(x).toFixed(3)
  console.log(`drain of ${r.n} (${ANALYZER} analyzer) in ${r.seconds.toFixed(1)} s = ${Math.round(r.n / r.seconds)} conv/s; PostgreSQL fsync=${r.fsync}, synchronous_commit=${r.synchronousCommit}`)
  console.log('')
  console.log('| per analysed conversation | server | PostgreSQL | total | WAL |')
  console.log('|---|---:|---:|---:|---:|')
  console.log(`| CPU | ${ms(r.serverMs)} ms | ${ms(r.pgMs)} ms | ${ms(r.serverMs + r.pgMs)} ms | ${Math.round(per(r.walBytes))} B |`)
  if (!r.top.length) return
  console.log('')
  console.log('| statement | calls / 1k conv | rows / call | exec ms / conv |')
  console.log('|---|---:|---:|---:|')
  for (const s of r.top) {
    const q = s.query.length > 110 ? `${s.query.slice(0, 107)}...` : s.query
    console.log(`| \`${q.replace(/\|/g, '\\|')}\` | ${(per(s.calls) * 1000).toFixed(1)} | ${(s.calls ? s.rows / s.calls : 0).toFixed(1)} | ${ms(s.ms)} |`)
  }
}

await main()
