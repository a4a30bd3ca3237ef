// npm run bench:export: the server's memory while it streams a large export. Fills a fresh
// database with EXPORT_ROWS analysed conversations (generate_series, one chunk at a time),
// starts `src/server.ts` in its own process, and samples that process's RSS from /proc
// while a client downloads, first an export of a tenth of the rows, then all of them as
// CSV and as NDJSON. Constant memory means the peaks stay the same as the rows grow tenfold.
//
//   DATABASE_URL=postgres://… npm run bench:export    (a database is created and dropped)
//   EXPORT_ROWS (1000000)   rows in the fixture
//
// Linux only (/proc). Without DATABASE_URL it runs on PGlite, whose database lives inside the
// server process, so the figures then include the embedded PostgreSQL's own memory.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import pino from 'pino'
import { loadConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/client.ts'
import { FILL_INSIGHTS_SQL, fillInsightsParams } from './insights-fill.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const ROWS = Number(process.env.EXPORT_ROWS ?? 1_000_000)
/** Rows per fill statement: large enough to be quick, small enough not to bloat one transaction. */
const FILL_CHUNK = 100_000
/** RSS sampling period: a batch takes a few ms, so 20 ms sees every plateau of a long export. */
const SAMPLE_MS = 20
const PG_ADMIN = process.env.DATABASE_URL
const log = (...a: unknown[]) => console.error('[export-memory]', ...a)
const mb = (kb: number) => Math.round(kb / 1024)

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })

/** VmRSS and VmHWM (peak) of a process, in kB. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
  return { rss: field('VmRSS'), hwm: field('VmHWM') }
}

async function target(): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (PG_ADMIN) {
    const name = `gleaner_export_bench_${process.pid}`
    const admin = new pg.Client({ connectionString: PG_ADMIN })
    await admin.connect()
    await admin.query(`CREATE DATABASE ${name}`)
    await admin.end()
    const url = new URL(PG_ADMIN)
    url.pathname = `/${name}`
    return {
      env: { DATABASE_URL: url.toString() },
      async drop() {
        const a = new pg.Client({ connectionString: PG_ADMIN })
        await a.connect()
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
        await a.end()
      }
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'gleaner-export-bench-'))
  return { env: { DATA_DIR: dir }, drop: async () => rmSync(dir, { recursive: true, force: true }) }
}

async function fill(env: Record<string, string>, newest: Date) {
  // the app's own client runs the migrations, then the fixture goes in chunk by chunk
  // no statement timeout: a 100,000-row chunk can take longer than the server's default on a busy machine
  const database = await openDatabase(loadConfig({ ...env, LOG_LEVEL: 'silent', DB_STATEMENT_TIMEOUT_MS: '0' }), pino({ level: 'silent' }))
  try {
    for (let first = 1; first <= ROWS; first += FILL_CHUNK) {
      await database.raw(FILL_INSIGHTS_SQL, fillInsightsParams(first, Math.min(FILL_CHUNK, ROWS - first + 1), newest))
      log(`filled ${Math.min(first + FILL_CHUNK - 1, ROWS)} rows`)
    }
    if (database.kind === 'postgres') await database.raw('VACUUM ANALYZE insights', [])
  } finally {
    await database.close()
  }
}

async function startServer(env: Record<string, string>): Promise<{ child: ChildProcess; base: string }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port), HOST: '127.0.0.1', AUTH: 'off', WORKER_ENABLED: 'false', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const base = `http://127.0.0.1:${port}`
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`)
    try {
      if ((await fetch(`${base}/health/ready`)).ok) return { child, base }
    } catch {}
    await new Promise((r) => setTimeout(r, 200))
  }
}

interface Row {
  measure: string
  rows: number
  mb: number
  seconds: number
  peakRssMb: number
}

/** Downloads one export, counting lines and bytes, while sampling the server's RSS. */
async function measure(pid: number, base: string, measureName: string, query: string): Promise<Row> {
  let peak = memoryOf(pid).rss
  const timer = setInterval(() => {
    peak = Math.max(peak, memoryOf(pid).rss)
  }, SAMPLE_MS)
  const started = performance.now()
  let bytes = 0
  let lines = 0
  try {
    const res = await fetch(`${base}/api/v1/insights/export?${query}`)
    if (!res.ok || !res.body) throw new Error(`export answered ${res.status}`)
    for await (const chunk of res.body) {
      bytes += chunk.byteLength
      for (const b of chunk) if (b === 10) lines++
    }
  } finally {
    clearInterval(timer)
  }
  peak = Math.max(peak, memoryOf(pid).rss)
  const seconds = (performance.now() - started) / 1000
  // the row count from the summary of the same filters; NDJSON must have exactly that many lines
  const filters = query.replace(/(^|&)format=\w+/, '')
  const { total } = (await (await fetch(`${base}/api/v1/insights/summary?${filters}`)).json()) as { total: number }
  if (query.includes('format=ndjson') && lines !== total) throw new Error(`NDJSON had ${lines} lines for ${total} insights`)
  const row = {
    measure: measureName,
    rows: total,
    mb: Math.round(bytes / 1e5) / 10,
    seconds: Math.round(seconds * 10) / 10,
    peakRssMb: mb(peak)
  }
  log(row)
  return row
}

const db = await target()
let server: { child: ChildProcess; base: string } | undefined
try {
  const newest = new Date()
  log(`filling ${ROWS} rows on ${PG_ADMIN ? 'PostgreSQL' : 'PGlite'}`)
  await fill(db.env, newest)
  server = await startServer(db.env)
  const pid = server.child.pid!
  // warm up: one small export, so JIT and pools are in the baseline
  await measure(pid, server.base, 'warm-up', 'format=csv&source=none')
  const idle = memoryOf(pid).rss
  const tenth = new Date(newest.getTime() - Math.floor(ROWS / 10) * 1000).toISOString()
  const rows = [
    await measure(pid, server.base, `CSV, newest tenth (${ROWS / 10} rows)`, `format=csv&since=${encodeURIComponent(tenth)}`),
    await measure(pid, server.base, `CSV, all ${ROWS} rows`, 'format=csv'),
    await measure(pid, server.base, `NDJSON, all ${ROWS} rows`, 'format=ndjson')
  ]
  const { hwm } = memoryOf(pid)
  console.log(`\nExport memory, ${PG_ADMIN ? 'PostgreSQL' : 'PGlite (in-process database)'}, Node ${process.version}, server RSS sampled every ${SAMPLE_MS} ms from /proc`)
  console.log(`server RSS before the exports (after a warm-up request): ${mb(idle)} MB\n`)
  console.log('| export | rows | size | time | rows/s | peak RSS |')
  console.log('|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(`| ${r.measure} | ${r.rows.toLocaleString('en')} | ${r.mb} MB | ${r.seconds} s | ${Math.round(r.rows / r.seconds).toLocaleString('en')} | ${r.peakRssMb} MB |`)
  }
  console.log(`\nserver VmHWM (peak RSS over its whole life): ${mb(hwm)} MB`)
} finally {
  if (server) {
    server.child.kill('SIGTERM')
    await once(server.child, 'exit')
  }
  await db.drop()
}
