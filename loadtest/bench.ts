// npm run bench: Gleaner's figures as ratios to ceilings measured in the same run, on the
// same machine. Starts what it needs (the server on PostgreSQL when DATABASE_URL is set,
// else PGlite; the fake model server), prints a table, writes loadtest/results/<date>.json.
// The server is pinned to the last core and this load generator to the first, where the
// machine has two or more.
//
//   BENCH_SECONDS (10)  seconds per load row      BENCH_DRAIN (50000)  local drain backlog
//   BENCH_MODEL_DRAIN (20000) fake-model backlog   BENCH_RSS (100000)   backlog for peak RSS
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { sql } from 'drizzle-orm'
import pg from 'pg'
import pino from 'pino'
import { loadConfig } from '../src/config.ts'
import { type Database, openDatabase } from '../src/db/client.ts'
import { startFakeModelServer } from './fake-model-server.ts'
import { conversationFor } from './workload.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const env = process.env
const SECONDS = Number(env.BENCH_SECONDS ?? 10)
const DRAIN_N = Number(env.BENCH_DRAIN ?? 50_000)
const MODEL_DRAIN_N = Number(env.BENCH_MODEL_DRAIN ?? 20_000)
const RSS_N = Number(env.BENCH_RSS ?? 100_000)
const MODEL_LATENCY_MS = 300
const PG_ADMIN = env.DATABASE_URL
const silent = pino({ level: 'silent' })

const cores = availableParallelism()
const pinned = cores >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0
const SERVER_CORE = String(cores - 1)
if (pinned) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })

const log = (...a: unknown[]) => console.error('[bench]', ...a)
const round = (n: number, d = 0) => Math.round(n * 10 ** d) / 10 ** d
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---------- databases ----------
interface Target {
  /** env for a server process */
  env: Record<string, string>
  /** open the same database in this process (PGlite: only while no server holds it) */
  open(): Promise<Database>
  drop(): Promise<void>
}

async function freshTarget(label: string): Promise<Target> {
  if (PG_ADMIN) {
    const name = `gleaner_bench_${label}_${process.pid}`
    const admin = new pg.Client({ connectionString: PG_ADMIN })
    await admin.connect()
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.query(`CREATE DATABASE ${name}`)
    await admin.end()
    const url = new URL(PG_ADMIN)
    url.pathname = `/${name}`
    return {
      env: { DATABASE_URL: url.toString() },
      open: () => openDatabase(loadConfig({ DATABASE_URL: url.toString() }), silent),
      async drop() {
        const a = new pg.Client({ connectionString: PG_ADMIN })
        await a.connect()
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
        await a.end()
      }
    }
  }
  const dir = mkdtempSync(join(tmpdir(), `gleaner-bench-${label}-`))
  return {
    env: { DATA_DIR: dir },
    open: () => openDatabase(loadConfig({ DATA_DIR: dir }), silent),
    async drop() {
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

// ---------- processes ----------
let nextPort = 4100 + (process.pid % 500)
interface Proc {
  child: ChildProcess
  url: string
  pid: number
  stop(): Promise<void>
}

async function startProc(script: string, extraEnv: Record<string, string>, readyPath: string): Promise<Proc> {
  const port = nextPort++
  const args = ['--import', 'tsx', script]
  const child = pinned
    ? spawn('taskset', ['-c', SERVER_CORE, process.execPath, ...args], { cwd: ROOT, env: { PATH: env.PATH, ...(env.NODE_OPTIONS ? { NODE_OPTIONS: env.NODE_OPTIONS } : {}), PORT: String(port), ...extraEnv }, stdio: ['ignore', 'ignore', 'inherit'] })
    : spawn(process.execPath, args, { cwd: ROOT, env: { PATH: env.PATH, ...(env.NODE_OPTIONS ? { NODE_OPTIONS: env.NODE_OPTIONS } : {}), PORT: String(port), ...extraEnv }, stdio: ['ignore', 'ignore', 'inherit'] })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 120_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}`)
    try {
      const r = await fetch(url + readyPath, { method: readyPath === '/api/v1/conversations' ? 'OPTIONS' : 'GET' })
      await r.arrayBuffer()
      break
    } catch {}
    if (Date.now() > deadline) throw new Error(`${script} did not start`)
    await sleep(100)
  }
  return {
    child,
    url,
    pid: child.pid!,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      })
  }
}

const SERVER_ENV = {
  HOST: '127.0.0.1',
  AUTH: 'off', // measures the pipeline, not key look-ups (cached in memory anyway)
  LOG_LEVEL: 'warn', // per-request info lines cost ~10%: production may keep them
  RATE_LIMIT_ANONYMOUS: '10000000',
  SWEEP_INTERVAL_MS: '200',
  BACKLOG_HARD_LIMIT: '100000000'
}
const startServer = (target: Target, extra: Record<string, string> = {}) =>
  startProc('src/server.ts', { ...SERVER_ENV, ...target.env, ...extra }, '/health')

// ---------- load ----------
interface LoadResult {
  rps: number
  p50: number
  p99: number
  non2xx: number
  errors: number
}

async function load(
  url: string,
  opts: { connections: number; seconds: number; body: (i: number) => string; overallRate?: number; batch?: boolean }
): Promise<LoadResult> {
  let i = 0
  const r = await autocannon({
    url: `${url}/api/v1/conversations${opts.batch ? '/batch' : ''}`,
    method: 'POST',
    connections: opts.connections,
    duration: opts.seconds,
    overallRate: opts.overallRate,
    headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: opts.body(i++) }) }]
  })
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors }
}

let seq = 0
const singleBody = () => JSON.stringify(conversationFor(seq++))
const batchOf = (n: number) => () => JSON.stringify({ conversations: Array.from({ length: n }, () => conversationFor(seq++)) })
const batchBody100 = batchOf(100)
const batchBody1000 = batchOf(1000)

/** Loads a backlog of n conversations through the batch route (the worker must be off). */
async function fillBacklog(url: string, n: number) {
  const per = 1000
  let sent = 0
  const lanes = Array.from({ length: 4 }, async () => {
    while (sent < n) {
      const size = Math.min(per, n - sent)
      sent += size
      const body = JSON.stringify({ conversations: Array.from({ length: size }, () => conversationFor(seq++)) })
      const r = await fetch(`${url}/api/v1/conversations/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      if (r.status !== 207) throw new Error(`backlog fill got ${r.status}`)
      await r.arrayBuffer()
    }
  })
  await Promise.all(lanes)
}

async function waitDrained(url: string, onTick?: () => void) {
  for (;;) {
    onTick?.()
    const h = (await (await fetch(`${url}/health`)).json()) as { backlog: { pending: number; processing: number }; queue_size: number }
    if (h.backlog.pending + h.backlog.processing === 0 && h.queue_size === 0) return
    await sleep(200)
  }
}

async function drainRate(db: Database) {
  const [r] = await db.query<{ n: number; s: number }>(
    sql`SELECT count(*)::int AS n, extract(epoch FROM max(analyzed_at) - min(analyzed_at))::float8 AS s FROM conversations WHERE status = 'analyzed'`
  )
  return r!.s > 0 ? r!.n / r!.s : 0
}

const readRss = (pid: number) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** Fills a backlog of RSS_N, then drains it with serverEnv, sampling the server's RSS. */
async function drainWatchingRss(label: string, serverEnv: Record<string, string>) {
  const target = await freshTarget(label)
  const filler = await startServer(target, { WORKER_ENABLED: 'false' })
  await fillBacklog(filler.url, RSS_N)
  await filler.stop()
  const s = await startServer(target, serverEnv)
  let peak = 0
  const t0 = Date.now()
  await waitDrained(s.url, () => {
    peak = Math.max(peak, readRss(s.pid))
  })
  const perSecWallClock = RSS_N / ((Date.now() - t0) / 1000)
  await s.stop()
  await target.drop()
  return { backlog: RSS_N, peakMB: peak / 1024 / 1024, perSecWallClock }
}

// ---------- ceiling B: raw inserts ----------
async function rawInserts(db: Database, rowsPerStatement: number, seconds: number, lanes: number) {
  let rows = 0
  const until = Date.now() + seconds * 1000
  const one = (i: number) => {
    const c = conversationFor(i)
    return sql`(gen_random_uuid(), ${c.source}, ${JSON.stringify(c.messages)}::jsonb, ${JSON.stringify(c.metadata)}::jsonb, 'pending', md5(${String(i)}))`
  }
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (Date.now() < until) {
        const values = Array.from({ length: rowsPerStatement }, () => one(seq++))
        await db.query(sql`INSERT INTO conversations (id, source, messages, metadata, status, text_hash) VALUES ${sql.join(values, sql`, `)}`)
        rows += rowsPerStatement
      }
    })
  )
  return rows / seconds
}

// ---------- run ----------
async function main() {
  const started = Date.now()
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, pinned, database: PG_ADMIN ? 'postgresql' : 'pglite' }
  log('machine', machine)
  const rows: Record<string, unknown> = {}

  // rows to run: BENCH_ROWS=1,3 runs only those (the test suite's smoke does)
  const only = env.BENCH_ROWS?.split(',').map((x) => x.trim())
  const want = (row: string) => !only || only.includes(row)
  let A: LoadResult | undefined
  let B100: number | undefined
  let B1000: number | undefined
  let S50: LoadResult | undefined
  let localDrain: number | undefined

  if (want('1')) {
    // 1. ceiling A
    const bare = await startProc('loadtest/bare-fastify.ts', {}, '/')
    await load(bare.url, { connections: 50, seconds: Math.min(2, SECONDS), body: singleBody })
    A = await load(bare.url, { connections: 50, seconds: SECONDS, body: singleBody })
    await bare.stop()
    rows.ceilingA = A
    log('ceiling A', A)
  }

  if (want('2')) {
    // 2. ceiling B
    const tb = await freshTarget('raw')
    const rawDb = await tb.open()
    const lanes = PG_ADMIN ? 10 : 1
    const B1 = await rawInserts(rawDb, 1, SECONDS / 2, PG_ADMIN ? 50 : 1)
    B100 = await rawInserts(rawDb, 100, SECONDS / 2, lanes)
    B1000 = await rawInserts(rawDb, 1000, SECONDS / 2, lanes)
    await rawDb.close()
    await tb.drop()
    rows.ceilingB = { single: B1, batch100: B100, batch1000: B1000 }
    log('ceiling B', rows.ceilingB)
  }

  if (want('3')) {
    // 3 + 4. ingest (worker off: ingest alone; the drain is measured below)
    const ti = await freshTarget('ingest')
    const srv = await startServer(ti, { WORKER_ENABLED: 'false' })
    await load(srv.url, { connections: 50, seconds: Math.min(2, SECONDS), body: singleBody })
    S50 = await load(srv.url, { connections: 50, seconds: SECONDS, body: singleBody })
    const S100 = await load(srv.url, { connections: 100, seconds: SECONDS, body: singleBody })
    const BA100 = await load(srv.url, { connections: 8, seconds: SECONDS, body: batchBody100, batch: true })
    const BA1000 = await load(srv.url, { connections: 4, seconds: SECONDS, body: batchBody1000, batch: true })
    await srv.stop()
    await ti.drop()
    rows.single = { c50: S50, c100: S100, ratioToA: A ? S50.rps / A.rps : null }
    rows.batch = {
      b100: { ...BA100, conversationsPerSec: BA100.rps * 100, ratioToB: B100 ? (BA100.rps * 100) / B100 : null },
      b1000: { ...BA1000, conversationsPerSec: BA1000.rps * 1000, ratioToB: B1000 ? (BA1000.rps * 1000) / B1000 : null }
    }
    log('ingest', rows.single, rows.batch)
  }

  if (want('5')) {
    // 5a. local drain of a backlog
    const td = await freshTarget('drain')
    const s0 = await startServer(td, { WORKER_ENABLED: 'false' })
    await fillBacklog(s0.url, DRAIN_N)
    await s0.stop()
    const s = await startServer(td)
    const t0 = Date.now()
    await waitDrained(s.url)
    const wallLocal = DRAIN_N / ((Date.now() - t0) / 1000)
    await s.stop()
    const db = await td.open()
    const localRate = await drainRate(db)
    await db.close()
    await td.drop()
    localDrain = localRate
    rows.drainLocal = { n: DRAIN_N, perSec: localRate, perSecWallClock: wallLocal }
    log('local drain', rows.drainLocal)
  }

  if (want('5')) {
    // 5b. drain through the fake model at 300 ms
    const fake = await startFakeModelServer({ latencyMs: MODEL_LATENCY_MS, port: 0 })
    const tm = await freshTarget('model')
    const batchMax = 100
    const concurrency = 2
    const modelEnv = {
      MODEL_PROVIDER: 'openai-compatible',
      MODEL_BASE_URL: fake.url,
      MODEL_NAME: 'fake-1',
      BATCH_MAX: String(batchMax),
      BATCH_INITIAL: String(batchMax),
      WORKER_CONCURRENCY: String(concurrency)
    }
    const s0 = await startServer(tm, { ...modelEnv, WORKER_ENABLED: 'false' })
    await fillBacklog(s0.url, MODEL_DRAIN_N)
    await s0.stop()
    const s = await startServer(tm, modelEnv)
    const t1 = Date.now()
    await waitDrained(s.url)
    const wallModel = MODEL_DRAIN_N / ((Date.now() - t1) / 1000)
    await s.stop()
    await fake.close()
    const db = await tm.open()
    const modelRate = await drainRate(db)
    await db.close()
    await tm.drop()
    const bound = (batchMax * concurrency) / (MODEL_LATENCY_MS / 1000)
    rows.drainModel = { n: MODEL_DRAIN_N, perSec: modelRate, perSecWallClock: wallModel, bound, ratio: modelRate / bound }
    log('model drain', rows.drainModel)
  }

  if (want('6')) {
    // 6. ingest → insight latency at half the max single-POST rate
    const tl = await freshTarget('latency')
    const s = await startServer(tl)
    // Half the maximum the service can sustain with its worker on: the lower of the
    // single-POST maximum (row 3) and the local drain rate (row 5). Offering half of ingest
    // alone would outrun the analyzer on one core and measure a growing backlog, not latency.
    const sustainable = Math.min(S50?.rps ?? Number.POSITIVE_INFINITY, localDrain ?? Number.POSITIVE_INFINITY)
    const rate = Math.max(1, Math.floor(Number.isFinite(sustainable) ? sustainable / 2 : 500))
    const L = await load(s.url, { connections: 50, seconds: SECONDS, body: singleBody, overallRate: rate })
    await waitDrained(s.url)
    await s.stop()
    const db = await tl.open()
    const [lat] = await db.query<{ p50: number; p99: number; n: number }>(sql`
      SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.created_at - c.received_at))::float8 AS p50,
             percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM i.created_at - c.received_at))::float8 AS p99,
             count(*)::int AS n
      FROM insights i JOIN conversations c ON c.id = i.conversation_id`)
    await db.close()
    await tl.drop()
    rows.latency = { offeredRps: rate, achievedRps: L.rps, insights: lat!.n, p50ms: lat!.p50 * 1000, p99ms: lat!.p99 * 1000 }
    log('latency', rows.latency)
  }

  // 7. peak RSS while a large backlog drains: as npm start runs it, and (7b) with the
  // container's heap flags (the Dockerfile's NODE_OPTIONS)
  if (want('7')) {
    rows.rss = await drainWatchingRss('rss', {})
    log('rss', rows.rss)
    const dockerNodeOptions = /^ENV NODE_OPTIONS="([^"]+)"/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
    if (dockerNodeOptions) {
      rows.rssContainer = { ...(await drainWatchingRss('rssdocker', { NODE_OPTIONS: dockerNodeOptions })), nodeOptions: dockerNodeOptions }
      log('rss (container heap flags)', rows.rssContainer)
    }
  }

  const result = { date: new Date().toISOString(), seconds: SECONDS, machine, rows, durationS: (Date.now() - started) / 1000 }
  const outDir = env.BENCH_OUT ?? join(ROOT, 'loadtest/results')
  mkdirSync(outDir, { recursive: true })
  const file = join(outDir, `${result.date.slice(0, 19).replace(/:/g, '-')}.json`)
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`)
  console.log(table(result))
  console.log(`\nwritten ${file} in ${round(result.durationS)} s`)
}

// biome-ignore lint/suspicious/noExplicitAny: the result is our own JSON, printed as written
function table(r: any): string {
  const x = r.rows
  const f = (n: number, d = 0) => round(n, d).toLocaleString('en-US')
  const pct = (v: number | null | undefined, of: string) => (v == null ? '—' : `${f(v * 100)}% of ${of}`)
  const lines = [
    `Gleaner bench ${r.date.slice(0, 10)} — ${r.machine.cpus} × ${r.machine.cpu}, Node ${r.machine.node}, ${r.machine.database}${r.machine.pinned ? ', server and load generator pinned to different cores' : ''}`,
    '',
    '| # | measure | figure | ratio |',
    '|---|---|---|---|'
  ]
  if (x.ceilingA) lines.push(`| 1 | ceiling A: bare Fastify, same JSON body, 50 conn | ${f(x.ceilingA.rps)} req/s, p99 ${f(x.ceilingA.p99)} ms | — |`)
  if (x.ceilingB)
    lines.push(
      `| 2 | ceiling B: raw INSERTs (1 / 100 / 1000 rows per statement) | ${f(x.ceilingB.single)} / ${f(x.ceilingB.batch100)} / ${f(x.ceilingB.batch1000)} rows/s | — |`
    )
  if (x.single) {
    lines.push(`| 3 | single-POST ingest, 50 conn | ${f(x.single.c50.rps)} req/s, p50 ${f(x.single.c50.p50)} ms, p99 ${f(x.single.c50.p99)} ms | ${pct(x.single.ratioToA, 'A')} |`)
    lines.push(
      `| 3 | single-POST ingest, 100 conn | ${f(x.single.c100.rps)} req/s, p50 ${f(x.single.c100.p50)} ms, p99 ${f(x.single.c100.p99)} ms | ${pct(x.ceilingA ? x.single.c100.rps / x.ceilingA.rps : null, 'A')} |`
    )
    lines.push(`| 4 | batch ingest, 100 per request | ${f(x.batch.b100.conversationsPerSec)} conv/s | ${pct(x.batch.b100.ratioToB, 'B(100)')} |`)
    lines.push(`| 4 | batch ingest, 1000 per request | ${f(x.batch.b1000.conversationsPerSec)} conv/s | ${pct(x.batch.b1000.ratioToB, 'B(1000)')} |`)
  }
  if (x.drainLocal)
    lines.push(`| 5 | drain, local analyzer, ${f(x.drainLocal.n)} backlog | ${f(x.drainLocal.perSec)} conv/s (wall clock ${f(x.drainLocal.perSecWallClock)}) | — |`)
  if (x.drainModel)
    lines.push(
      `| 5 | drain, fake model at ${MODEL_LATENCY_MS} ms, ${f(x.drainModel.n)} backlog | ${f(x.drainModel.perSec)} conv/s | ${pct(x.drainModel.ratio, `${f(x.drainModel.bound)}/s (batch × concurrency / latency)`)} |`
    )
  if (x.latency)
    lines.push(
      `| 6 | ingest→insight latency, worker on, ${f(x.latency.offeredRps)} req/s offered (half the sustainable max) (${f(x.latency.achievedRps)} achieved) | p50 ${f(x.latency.p50ms)} ms, p99 ${f(x.latency.p99ms)} ms | — |`
    )
  if (x.rss)
    lines.push(`| 7 | peak RSS while ${f(x.rss.backlog)} backlog drains (npm start) | ${f(x.rss.peakMB)} MB, drained at ${f(x.rss.perSecWallClock)} conv/s | — |`)
  if (x.rssContainer)
    lines.push(
      `| 7b | the same with the image's NODE_OPTIONS (${x.rssContainer.nodeOptions}) | ${f(x.rssContainer.peakMB)} MB, drained at ${f(x.rssContainer.perSecWallClock)} conv/s | — |`
    )
  const loads = [x.single?.c50, x.single?.c100, x.batch?.b100, x.batch?.b1000].filter(Boolean) as LoadResult[]
  const errs = loads.reduce((a, l) => a + l.non2xx + l.errors, 0)
  if (errs) lines.push('', `note: ${errs} non-2xx or failed requests during ingest rows`)
  return lines.join('\n')
}

await main()
