// npm run chaos: hostile-load scenarios on demand, each printing what held. In-process app on
// PGlite (or DATABASE_URL), a real redis-server of its own (redis-server must be on PATH).
//
//   npm run chaos                 all scenarios
//   npm run chaos -- redis-down   one of: redis-down, redis-hang, streams, pg-kill, instance-kill
//
// Scenarios:
//   redis-down  Redis killed under keyed reads: requests keep their limits (policy local) and
//               their latency; /health says degraded and why.
//   redis-hang  Redis SIGSTOPped: the same, where before the whole API hung.
//   streams     1,000 live streams open while conversations are ingested: ingest throughput
//               with the streams against without them in the same run, and the event loop's
//               longest stall; streams beyond the caps are refused.
//   pg-kill     PostgreSQL (a cluster of its own) kill -9'd CHAOS_PG_KILLS (3) times under
//               sustained ingest: every outage answered 503 with Retry-After, never a 500;
//               ingest resumes without a restart; every acknowledged conversation is stored
//               and analysed, none twice.
//   instance-kill  two server processes draining a backlog through a slow fake model; one is
//               SIGKILLed with batches in flight: its claims come back within one lease
//               (LEASE_SECONDS, 30 s) and the other instance finishes everything.
// pg-kill and instance-kill need PostgreSQL 15's binaries (apt-get install postgresql-15)
// and, run as root, a postgres user; test/e2e/outage.test.ts and crash.test.ts are their
// assertions in the suite.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pg from 'pg'
import pino from 'pino'
import { request } from 'undici'
import { type App, buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { checkAcknowledged, startServer, statusCounts } from '../test/e2e/server-process.ts'
import { pgClusterSkip, startCluster } from '../test/pg-cluster.ts'
import { startFakeModelServer } from './fake-model-server.ts'
import { startRedis } from './redis-server.ts'

const STREAMS = Number(process.env.CHAOS_STREAMS ?? 1_000)
const INGEST = Number(process.env.CHAOS_INGEST ?? 300)
const READS = 40
const READ_LIMIT = 20

const teardowns: (() => unknown)[] = []
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn), comment: (...args: unknown[]) => console.error(...args), passing: () => true }
const db = process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : { DATA_DIR: 'memory://' }

async function app(env: Record<string, string>): Promise<{ app: App; base: string }> {
  const a = await buildApp(loadConfig({ LOG_LEVEL: 'silent', ...db, ...env }), { logger: pino({ level: 'silent' }) })
  teardowns.push(() => a.close())
  await a.listen({ port: 0, host: '127.0.0.1' })
  const { port } = a.server.address() as { port: number }
  return { app: a, base: `http://127.0.0.1:${port}` }
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? 0
const ms = (n: number) => `${n.toFixed(1)} ms`

async function redisFault(kind: 'down' | 'hang') {
  const redis = await startRedis(t)
  const { app: a, base } = await app({ AUTH: 'on', WORKER_ENABLED: 'false', REDIS_URL: redis.url, RATE_LIMIT_FREE: String(READ_LIMIT) })
  const { key } = await a.repos.apiKeys.create({ name: `chaos-${kind}`, scopes: ['read'], tier: 'free' })
  if (kind === 'down') await redis.stop()
  else redis.hang()
  const statuses = new Map<number, number>()
  const latencies: number[] = []
  for (let i = 0; i < READS; i++) {
    const started = performance.now()
    const res = await request(`${base}/api/v1/insights?limit=1`, { headers: { authorization: `Bearer ${key}` } })
    await res.body.dump()
    latencies.push(performance.now() - started)
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
  }
  const health = (await (await request(`${base}/health`)).body.json()) as { status: string; rate_limit_store: { degraded_reason: string | null } }
  const allowed = statuses.get(200) ?? 0
  console.log(`redis-${kind}: ${READS} keyed reads at a limit of ${READ_LIMIT}: ${JSON.stringify(Object.fromEntries(statuses))}`)
  console.log(`  latency p50 ${ms(pct(latencies, 0.5))}, max ${ms(Math.max(...latencies))}; /health ${health.status} (${health.rate_limit_store.degraded_reason})`)
  console.log(`  held: ${allowed <= READ_LIMIT && (statuses.get(429) ?? 0) > 0 ? 'yes' : 'NO'} (limits enforced locally, every request answered)`)
  if (kind === 'hang') redis.resume()
}

async function ingestRate(base: string, n: number): Promise<number> {
  const started = performance.now()
  for (let i = 0; i < n; i += 50) {
    const conversations = Array.from({ length: Math.min(50, n - i) }, (_, j) => ({
      source: 'chaos',
      external_id: `chaos-${process.pid}-${Date.now()}-${i + j}`,
      messages: [{ role: 'user', content: `My order ${i + j} arrived broken and I want a refund please.` }]
    }))
    const res = await request(`${base}/api/v1/conversations/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ conversations }) })
    await res.body.dump()
  }
  return (n / (performance.now() - started)) * 1000
}

async function streams() {
  const { app: a, base } = await app({ AUTH: 'off', STREAM_MAX: String(STREAMS), STREAM_MAX_PER_KEY: String(STREAMS + 10), RATE_LIMIT_ANONYMOUS: '10000000' })
  await ingestRate(base, INGEST) // warm-up: the first batches pay for compilation and caches
  const quiet = await ingestRate(base, INGEST)
  let events = 0
  const open = await Promise.all(
    Array.from({ length: STREAMS }, async () => {
      const res = await request(`${base}/api/v1/insights/stream`)
      res.body.on('data', (chunk: Buffer) => {
        if (chunk.includes('event: insight')) events++
      })
      res.body.on('error', () => {})
      return res
    })
  )
  const over = await request(`${base}/api/v1/insights/stream`)
  await over.body.dump()
  const delay = monitorEventLoopDelay({ resolution: 10 })
  delay.enable()
  const loaded = await ingestRate(base, INGEST)
  const drained = performance.now()
  while (events < STREAMS * INGEST && performance.now() - drained < 120_000) await new Promise((r) => setTimeout(r, 100))
  delay.disable()
  for (const res of open) res.body.destroy()
  console.log(`streams: ${open.filter((r) => r.statusCode === 200).length} open; one more: ${over.statusCode}`)
  console.log(`  ingest ${quiet.toFixed(0)}/s without streams, ${loaded.toFixed(0)}/s with ${STREAMS} (${(loaded / quiet).toFixed(2)}×)`)
  console.log(`  events delivered ${events}, ${STREAMS * INGEST} expected at least (insights of the runs before may still arrive); longest event-loop stall ${ms(delay.max / 1e6)}`)
  console.log(`  held: ${over.statusCode === 503 && loaded / quiet > 0.5 ? 'yes' : 'NO'} (cap enforced, ingest keeps at least half its rate)`)
  void a
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const PG_KILLS = Number(process.env.CHAOS_PG_KILLS ?? 3)
/** seconds of ingest before each kill, and after the last restart */
const PG_KILL_EVERY_S = Number(process.env.CHAOS_PG_KILL_EVERY_S ?? 3)
const INSTANCE_BACKLOG = Number(process.env.CHAOS_INSTANCE_BACKLOG ?? 2_000)

function chaosConversations(n: number, tag: string) {
  return Array.from({ length: n }, (_, j) => ({
    source: 'chaos',
    external_id: `${tag}-${process.pid}-${Date.now()}-${j}-${Math.random().toString(36).slice(2)}`,
    messages: [{ role: 'user', content: `My order ${j} arrived broken and I want a refund please (${tag}).` }]
  }))
}

/** a pool for looking at the database from outside the app; its errors while PostgreSQL is away are expected */
function lookPool(url: string) {
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  pool.on('error', () => {})
  teardowns.push(() => pool.end())
  return pool
}

async function waitUntil(what: string, fn: () => Promise<boolean>, timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`chaos: timed out waiting for ${what}`)
    await sleep(100)
  }
}

async function pgKill() {
  if (pgClusterSkip) return console.log(`pg-kill: skipped (${pgClusterSkip})`)
  const cluster = await startCluster(t)
  const { base } = await app({ DATABASE_URL: cluster.url, AUTH: 'off', LEASE_SECONDS: '5', SWEEP_INTERVAL_MS: '200', RATE_LIMIT_ANONYMOUS: '10000000' })
  const acked = new Set<string>()
  const answers = new Map<string, number>()
  const count = (k: string) => answers.set(k, (answers.get(k) ?? 0) + 1)
  let producing = true
  let lastOk = 0
  const lane = async () => {
    while (producing) {
      try {
        const res = await request(`${base}/api/v1/conversations/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ conversations: chaosConversations(20, 'pg-kill') })
        })
        const payload = (await res.body.json().catch(() => null)) as { results?: { id?: string }[] } | null
        if (res.statusCode === 503) count(res.headers['retry-after'] ? '503 with Retry-After' : '503 without Retry-After')
        else count(String(res.statusCode))
        if (res.statusCode < 300) {
          lastOk = performance.now()
          for (const r of payload?.results ?? []) if (r.id) acked.add(r.id)
        } else await sleep(50) // a producer honouring back-off a little, not a tight loop
      } catch {
        count('network error')
        await sleep(50)
      }
    }
  }
  const lanes = [lane(), lane()]
  const recoveries: number[] = []
  for (let k = 0; k < PG_KILLS; k++) {
    await sleep(PG_KILL_EVERY_S * 1000)
    await cluster.crash()
    await sleep(1_000)
    await cluster.start()
    const restarted = performance.now()
    await waitUntil('ingest to succeed again after the restart', async () => lastOk > restarted)
    recoveries.push(lastOk - restarted)
  }
  await sleep(PG_KILL_EVERY_S * 1000)
  producing = false
  await Promise.all(lanes)
  const pool = lookPool(cluster.url)
  const ids = [...acked]
  await waitUntil('every acknowledged conversation to be processed', async () => {
    const counts = await statusCounts(pool)
    return !counts.pending && !counts.processing
  })
  const check = await checkAcknowledged(pool, ids)
  const lost = ids.length - check.present
  const fivehundreds = [...answers].filter(([k]) => k.startsWith('5') && !k.startsWith('503')).reduce((a, [, n]) => a + n, 0) + (answers.get('503 without Retry-After') ?? 0)
  console.log(`pg-kill: ${PG_KILLS} × kill -9 of PostgreSQL under ingest (2 producers, batches of 20)`)
  console.log(`  answers ${JSON.stringify(Object.fromEntries(answers))}`)
  console.log(`  ingest back ${recoveries.map((r) => ms(r)).join(', ')} after each restart`)
  console.log(`  acknowledged ${ids.length}, lost ${lost}; ${JSON.stringify(check.byStatus)}; wrong insight counts ${check.wrongInsightCount}, duplicate insights ${check.duplicateInsights}`)
  console.log(`  held: ${lost === 0 && fivehundreds === 0 && check.wrongInsightCount === 0 && check.duplicateInsights === 0 ? 'yes' : 'NO'} (nothing acknowledged lost, outages are 503 with Retry-After, no restart needed)`)
}

async function instanceKill() {
  if (pgClusterSkip) return console.log(`instance-kill: skipped (${pgClusterSkip})`)
  const cluster = await startCluster(t)
  const fake = await startFakeModelServer({ latencyMs: 300 })
  teardowns.push(() => fake.close())
  const env = {
    DATABASE_URL: cluster.url,
    MODEL_PROVIDER: 'openai-compatible',
    MODEL_BASE_URL: fake.url,
    MODEL_NAME: 'fake-1',
    BATCH_MAX: '20',
    BATCH_INITIAL: '20',
    RATE_LIMIT_ANONYMOUS: '10000000'
  }
  const leaseSeconds = 30 // the default, which the processes keep
  const a = await startServer(t, { ...env, INSTANCE_ID: 'chaos-a' })
  const pool = lookPool(cluster.url)
  const ids: string[] = []
  for (let i = 0; i < INSTANCE_BACKLOG; i += 500) {
    const res = await request(`${a.base}/api/v1/conversations/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ conversations: chaosConversations(Math.min(500, INSTANCE_BACKLOG - i), 'instance-kill') })
    })
    for (const r of ((await res.body.json()) as { results: { id: string }[] }).results) ids.push(r.id)
  }
  const held = async (owner: string) =>
    (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM conversation_queue WHERE state = 'processing' AND lease_owner LIKE $1", [`${owner}%`])).rows[0]!.n
  await waitUntil('chaos-a to hold claims', async () => (await held('chaos-a')) > 0)
  const b = await startServer(t, { ...env, INSTANCE_ID: 'chaos-b' })
  const stranded = await held('chaos-a')
  await a.kill()
  const killed = performance.now()
  await waitUntil('the killed instance\'s claims to come back', async () => (await held('chaos-a')) === 0, (leaseSeconds + 60) * 1000)
  const returned = performance.now() - killed
  await waitUntil('the surviving instance to finish the backlog', async () => {
    const counts = await statusCounts(pool)
    return !counts.pending && !counts.processing
  })
  const finished = performance.now() - killed
  const check = await checkAcknowledged(pool, ids)
  const lost = ids.length - check.present
  void b
  console.log(`instance-kill: ${ids.length} acknowledged, two instances, fake model at 300 ms; SIGKILL of one holding ${stranded} claims`)
  console.log(`  its claims back in ${(returned / 1000).toFixed(1)} s (lease ${leaseSeconds} s, renewed every ${leaseSeconds / 3} s); backlog finished ${(finished / 1000).toFixed(1)} s after the kill`)
  console.log(`  lost ${lost}; ${JSON.stringify(check.byStatus)}; duplicate insights ${check.duplicateInsights}`)
  console.log(`  held: ${lost === 0 && check.duplicateInsights === 0 && returned < (leaseSeconds + 15) * 1000 ? 'yes' : 'NO'} (a dead instance's work is back within one lease, nothing lost or analysed twice)`)
}

const SCENARIOS: Record<string, () => Promise<void>> = {
  'redis-down': () => redisFault('down'),
  'redis-hang': () => redisFault('hang'),
  streams,
  'pg-kill': pgKill,
  'instance-kill': instanceKill
}
const chosen = process.argv.slice(2).filter((a) => a in SCENARIOS)
try {
  for (const name of chosen.length ? chosen : Object.keys(SCENARIOS)) {
    await SCENARIOS[name]!()
    for (const fn of teardowns.splice(0).reverse()) await fn()
  }
} finally {
  for (const fn of teardowns.splice(0).reverse()) await fn()
}
