// npm run chaos: hostile-load scenarios on demand, each printing what held. In-process app on
// PGlite (or DATABASE_URL), a real redis-server of its own (redis-server must be on PATH).
//
//   npm run chaos                 all scenarios
//   npm run chaos -- redis-down   one of: redis-down, redis-hang, streams
//
// Scenarios:
//   redis-down  Redis killed under keyed reads: requests keep their limits (policy local) and
//               their latency; /health says degraded and why.
//   redis-hang  Redis SIGSTOPped: the same, where before the whole API hung.
//   streams     1,000 live streams open while conversations are ingested: ingest throughput
//               with the streams against without them in the same run, and the event loop's
//               longest stall; streams beyond the caps are refused.
// Not here yet: PostgreSQL kill (test/e2e/outage.test.ts covers it) and instance kill
// (test/e2e/crash.test.ts).
import { monitorEventLoopDelay } from 'node:perf_hooks'
import pino from 'pino'
import { request } from 'undici'
import { type App, buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { startRedis } from './redis-server.ts'

const STREAMS = Number(process.env.CHAOS_STREAMS ?? 1_000)
const INGEST = Number(process.env.CHAOS_INGEST ?? 300)
const READS = 40
const READ_LIMIT = 20

const teardowns: (() => unknown)[] = []
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) }
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
  console.log(`  events delivered ${events} of ${STREAMS * INGEST}; longest event-loop stall ${ms(delay.max / 1e6)}`)
  console.log(`  held: ${over.statusCode === 503 && loaded / quiet > 0.5 ? 'yes' : 'NO'} (cap enforced, ingest keeps at least half its rate)`)
  void a
}

const SCENARIOS: Record<string, () => Promise<void>> = { 'redis-down': () => redisFault('down'), 'redis-hang': () => redisFault('hang'), streams }
const chosen = process.argv.slice(2).filter((a) => a in SCENARIOS)
try {
  for (const name of chosen.length ? chosen : Object.keys(SCENARIOS)) {
    await SCENARIOS[name]!()
    for (const fn of teardowns.splice(0).reverse()) await fn()
  }
} finally {
  for (const fn of teardowns.splice(0).reverse()) await fn()
}
