// npm run bench:peers: Gleaner beside two baselines doing the same job (peers/bullmq.ts,
// peers/pgboss.ts), compared by CPU per unit of work, never by wall-clock rates: this
// machine is shared, and CPU read from /proc moves far less with the neighbours' load.
// For each system, on a database of its own: (a) CPU per single POST over PEERS_POSTS posts
// with the worker off; (b) CPU per drained conversation for a backlog of PEERS_N with the
// local analyzer, and again (fresh database) with the fake model at 300 ms, 20 conversations
// a call; peak RSS of the server (VmHWM). CPU = the server process + the backends of the
// run's database (+ Redis, from its INFO, for BullMQ). Prints a table, writes JSON.
//
//   PEERS_N (20000)   backlog      PEERS_POSTS (20000)   measured POSTs
//   PEERS_DATABASE_URL (postgres://postgres@127.0.0.1:5433/postgres, durable)   admin URL
//   PEERS_REDIS_URL (REDIS_URL, else redis://127.0.0.1:6390)   PEERS_SYSTEMS (gleaner,bullmq,pgboss)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import pg from 'pg'
import { cpuMs, databaseBackendsCpu } from '../bench/cpu.ts'
import { singleBody } from '../bench/load.ts'
import { type Proc, pinLoadGenerator, ROOT, startProc, startServer, withProc } from '../bench/processes.ts'
import { startFakeModelServer } from '../fake-model-server.ts'

const env = process.env
const N = Number(env.PEERS_N ?? 20_000)
const POSTS = Number(env.PEERS_POSTS ?? 20_000)
const ADMIN = env.PEERS_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5433/postgres'
const REDIS = env.PEERS_REDIS_URL ?? env.REDIS_URL ?? 'redis://127.0.0.1:6390'
/** Unmeasured POSTs first: JIT, pools and prepared statements settle. */
const WARMUP = Math.min(2_000, POSTS)
const MODEL_LATENCY_MS = 300
const MODEL_CONCURRENCY = 8
/** A drain that makes no progress for this long has failed (a peer's bug, not a slow machine). */
const STALL_MS = 60_000
const log = (...a: unknown[]) => console.error('[peers]', ...a)

interface System {
  name: string
  start(env: Record<string, string>, opts: { worker: boolean; model?: string }): Promise<Proc>
  usesRedis: boolean
}

const peer = (script: string) => (e: Record<string, string>, o: { worker: boolean; model?: string }) =>
  startProc(
    script,
    { ...e, WORKER: o.worker ? 'on' : 'off', MODEL_CONCURRENCY: String(MODEL_CONCURRENCY), ...(o.model ? { MODEL_BASE_URL: o.model, MODEL_NAME: 'fake-1' } : {}) },
    { path: '/health', identify: (b) => ({ pid: (b as { pid?: number }).pid }) }
  )

const SYSTEMS: System[] = [
  {
    name: 'gleaner',
    usesRedis: false,
    start: (e, o) =>
      startServer({
        ...e,
        WORKER_ENABLED: String(o.worker),
        // 20 a model call like the peers, PII masking off because they do not mask; the rest is Gleaner as it ships
        ...(o.model
          ? { MODEL_PROVIDER: 'openai-compatible', MODEL_BASE_URL: o.model, MODEL_NAME: 'fake-1', BATCH_MAX: '20', BATCH_INITIAL: '20', WORKER_CONCURRENCY: String(MODEL_CONCURRENCY), REDACT_PII: 'off' }
          : {})
      })
  },
  { name: 'bullmq', usesRedis: true, start: peer('loadtest/peers/bullmq.ts') },
  { name: 'pgboss', usesRedis: false, start: peer('loadtest/peers/pgboss.ts') }
]

interface Cpu {
  serverMs: number
  pgMs: number
  /** pgMs by backend type: client backends (the system's statements) and autovacuum workers */
  pgByTypeMs: Record<string, number>
  redisMs: number
}

async function withDatabase<T>(label: string, fn: (url: string, name: string) => Promise<T>): Promise<T> {
  const name = `gleaner_peers_${label}_${process.pid}`
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: ADMIN })
    await c.connect()
    await c.query(sql).finally(() => c.end())
  }
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(ADMIN)
  url.pathname = `/${name}`
  try {
    return await fn(url.toString(), name)
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  }
}

const redisCpuMs = async (r: Redis) => {
  const info = await r.info('cpu')
  const v = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0)
  return (v('used_cpu_sys') + v('used_cpu_user')) * 1000
}

const peakRssMB = (pid: number) => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : 0
}

async function posts(url: string, amount: number) {
  if (amount <= 0) return
  const r = await autocannon({
    url: `${url}/api/v1/conversations`,
    method: 'POST',
    connections: 50,
    amount,
    headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: singleBody() }) }]
  })
  if (r.non2xx || r.errors) throw new Error(`${r.non2xx} non-2xx and ${r.errors} failed POSTs`)
}

/** CPU of the server, the database's backends and Redis while `fn` runs; backends polled meanwhile. */
async function measure(s: Proc, db: pg.Client, dbName: string, redis: Redis | null, fn: (tick: () => Promise<void>) => Promise<void>): Promise<Cpu> {
  const backends = databaseBackendsCpu(db, dbName)
  await backends.start()
  const [s0, r0] = [cpuMs(s.pid), redis ? await redisCpuMs(redis) : 0]
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      await backends.sample()
      await new Promise((r) => setTimeout(r, 200))
    }
  })()
  await fn(() => backends.sample())
  sampling = false
  await sampler
  await backends.sample()
  return { serverMs: cpuMs(s.pid) - s0, pgMs: backends.totalMs(), pgByTypeMs: backends.byTypeMs(), redisMs: redis ? (await redisCpuMs(redis)) - r0 : 0 }
}

const insightCount = async (db: pg.Client) => Number((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM insights')).rows[0]!.n)

async function drain(system: System, e: Record<string, string>, db: pg.Client, dbName: string, redis: Redis | null, backlog: number, model?: string) {
  return withProc(
    () => system.start(e, { worker: true, model }),
    async (s) => {
      let n0 = 0
      let n = 0
      const t0 = Date.now()
      const cpu = await measure(s, db, dbName, redis, async () => {
        // counting starts once the window does: what drained before it is not charged to it
        n0 = await insightCount(db)
        let last = { n: n0, at: Date.now() }
        for (;;) {
          n = await insightCount(db)
          if (n >= backlog) break
          if (n > last.n) last = { n, at: Date.now() }
          else if (Date.now() - last.at > STALL_MS) throw new Error(`${system.name} drain stalled at ${n} of ${backlog}`)
          await new Promise((r) => setTimeout(r, 200))
        }
      })
      return { n: n - n0, ...cpu, peakRssMB: peakRssMB(s.pid), seconds: (Date.now() - t0) / 1000 }
    }
  )
}

async function runSystem(system: System, modelUrl: string) {
  const redis = system.usesRedis ? new Redis(REDIS) : null
  const phase = async <T>(label: string, fn: (e: Record<string, string>, db: pg.Client, dbName: string) => Promise<T>) =>
    withDatabase(`${system.name}_${label}`, async (url, name) => {
      const db = new pg.Client({ connectionString: url })
      await db.connect()
      try {
        return await fn({ DATABASE_URL: url, REDIS_URL: REDIS, BULLMQ_PREFIX: `gleaner-peers-${process.pid}-${label}` }, db, name)
      } finally {
        await db.end()
      }
    })
  try {
    return await phase('local', async (e, db, dbName) => {
      const ingest = await withProc(
        () => system.start(e, { worker: false }),
        async (s) => {
          await posts(s.url, WARMUP)
          const cpu = await measure(s, db, dbName, redis, () => posts(s.url, POSTS))
          await posts(s.url, N - WARMUP - POSTS) // the rest of the backlog, unmeasured
          return { posts: POSTS, ...cpu, peakRssMB: peakRssMB(s.pid) }
        }
      )
      log(system.name, 'ingest', ingest)
      const local = await drain(system, e, db, dbName, redis, Math.max(N, WARMUP + POSTS))
      log(system.name, 'local drain', local)
      const model = await phase('model', async (e2, db2, dbName2) => {
        await withProc(
          () => system.start(e2, { worker: false }),
          (s) => posts(s.url, N)
        )
        return drain(system, e2, db2, dbName2, redis, N, modelUrl)
      })
      log(system.name, 'model drain', model)
      return { ingest, local, model }
    })
  } finally {
    await redis?.quit()
  }
}

type Figures = Awaited<ReturnType<typeof runSystem>>
const perUnit = (c: Cpu, n: number) => ({ server: c.serverMs / n, pg: c.pgMs / n, redis: c.redisMs / n, total: (c.serverMs + c.pgMs + c.redisMs) / n })
const ms = (c: Cpu, n: number, redis: boolean) => {
  const p = perUnit(c, n)
  // autovacuum's share of PostgreSQL's CPU: whether it runs on a system's tables inside a
  // window is chance, so a run's figure says whether it was counted
  const av = (c.pgByTypeMs['autovacuum worker'] ?? 0) / n
  return `**${p.total.toFixed(3)}** (${p.server.toFixed(3)} + ${p.pg.toFixed(3)}${av ? ` [av ${av.toFixed(3)}]` : ''}${redis ? ` + ${p.redis.toFixed(3)}` : ''})`
}

function table(results: Record<string, Figures>, date: string) {
  const lines = [
    `bench:peers ${date.slice(0, 10)}: ${POSTS.toLocaleString('en-US')} measured POSTs, ${N.toLocaleString('en-US')} backlog; CPU ms, total (server + PostgreSQL [of which autovacuum] [+ Redis])`,
    '',
    '| system | CPU per POST, worker off | CPU per conversation, local drain | CPU per conversation, fake model 300 ms | peak RSS: ingest / local / model |',
    '|---|---:|---:|---:|---:|'
  ]
  for (const s of SYSTEMS) {
    const r = results[s.name]
    if (!r) continue
    lines.push(
      `| ${s.name} | ${ms(r.ingest, r.ingest.posts, s.usesRedis)} | ${ms(r.local, r.local.n, s.usesRedis)} | ${ms(r.model, r.model.n, s.usesRedis)} | ${[r.ingest, r.local, r.model].map((x) => Math.round(x.peakRssMB)).join(' / ')} MB |`
    )
  }
  return lines.join('\n')
}

async function main() {
  pinLoadGenerator()
  const only = env.PEERS_SYSTEMS?.split(',').map((x) => x.trim())
  const fake = await startFakeModelServer({ latencyMs: MODEL_LATENCY_MS, port: 0 })
  const results: Record<string, Figures> = {}
  try {
    for (const s of SYSTEMS) if (!only || only.includes(s.name)) results[s.name] = await runSystem(s, fake.url)
  } finally {
    await fake.close()
  }
  const date = new Date().toISOString()
  const perConversation = Object.fromEntries(
    Object.entries(results).map(([k, r]) => [k, { ingest: perUnit(r.ingest, r.ingest.posts), local: perUnit(r.local, r.local.n), model: perUnit(r.model, r.model.n) }])
  )
  const out = env.PEERS_OUT ?? join(ROOT, 'loadtest/results')
  mkdirSync(out, { recursive: true })
  const file = join(out, `peers-${date.slice(0, 19).replace(/:/g, '-')}.json`)
  const settings = { n: N, posts: POSTS, warmup: WARMUP, modelLatencyMs: MODEL_LATENCY_MS, modelConcurrency: MODEL_CONCURRENCY, database: new URL(ADMIN).port }
  writeFileSync(file, `${JSON.stringify({ date, settings, node: process.version, results, perConversationMs: perConversation }, null, 2)}\n`)
  console.log(table(results, date))
  console.log(`\nwritten ${file}`)
}

await main()
