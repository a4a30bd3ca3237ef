// The bench's rows, as a typed list: each measures one thing against a ceiling measured in
// the same run, cleans up what it started whatever happens (withProc, withTarget), and
// prints its own line of the table. BENCH_ROWS=1,3 picks rows by id.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import { startFakeModelServer } from '../fake-model-server.ts'
import { batchOf, drainRate, fillBacklog, type LoadResult, load, rawInserts, readRss, singleBody, waitDrained } from './load.ts'
import { ROOT, startBareFastify, startServer, withProc } from './processes.ts'
import { PG_ADMIN, type Target, withDatabase, withTarget } from './targets.ts'

export interface BenchSettings {
  /** seconds per load row (BENCH_SECONDS) */
  seconds: number
  /** backlog the local analyzer drains (BENCH_DRAIN) */
  drainN: number
  /** backlog the fake model drains (BENCH_MODEL_DRAIN) */
  modelDrainN: number
  /** backlog drained while RSS is sampled (BENCH_RSS) */
  rssN: number
}

interface Drain {
  n: number
  perSec: number
  perSecWallClock: number
}
interface RssDrain {
  backlog: number
  peakMB: number
  perSecWallClock: number
}
type BatchIngest = LoadResult & { conversationsPerSec: number; ratioToB: number | null }

/** Every figure a run can record, under the keys loadtest/results/*.json has always used. */
export interface Results {
  ceilingA: LoadResult
  ceilingB: { single: number; batch100: number; batch1000: number }
  single: { c50: LoadResult; c100: LoadResult; ratioToA: number | null }
  batch: { b100: BatchIngest; b1000: BatchIngest }
  drainLocal: Drain
  drainModel: Drain & { bound: number; ratio: number }
  latency: { offeredRps: number; achievedRps: number; insights: number; p50ms: number; p99ms: number }
  rss: RssDrain
  rssContainer: RssDrain & { nodeOptions: string }
}

export interface BenchRow {
  /** what BENCH_ROWS names */
  id: string
  /** measures, reading earlier rows' figures from `results` for its ratios */
  run(settings: BenchSettings, results: Partial<Results>): Promise<Partial<Results>>
  /** its lines of the markdown table */
  table(results: Partial<Results>): string[]
}

/** The fake model's latency in the model drain row: about a hosted model's for a small batch. */
const MODEL_LATENCY_MS = 300
const MODEL_BATCH_MAX = 100
const MODEL_CONCURRENCY = 2
/** Warm-up before a measured load: JIT, connection pools and caches settle. */
const WARMUP_SECONDS = 2

const round = (n: number, d = 0) => Math.round(n * 10 ** d) / 10 ** d
const f = (n: number, d = 0) => round(n, d).toLocaleString('en-US')
const pct = (v: number | null | undefined, of: string) => (v == null ? '—' : `${f(v * 100)}% of ${of}`)
const log = (...a: unknown[]) => console.error('[bench]', ...a)

/** Fills a backlog with the worker off, then lets a server with `env` drain it. */
async function drainBacklog(target: Target, n: number, env: Record<string, string>, onTick?: (pid: number) => void) {
  await withProc(
    () => startServer({ ...target.env, ...env, WORKER_ENABLED: 'false' }),
    (s) => fillBacklog(s.url, n)
  )
  return withProc(
    () => startServer({ ...target.env, ...env }),
    async (s) => {
      const t0 = Date.now()
      await waitDrained(s.url, () => onTick?.(s.pid))
      return n / ((Date.now() - t0) / 1000)
    }
  )
}

/** Fills a backlog of rssN, then drains it with `env`, sampling the server's RSS. */
async function drainWatchingRss(label: string, settings: BenchSettings, env: Record<string, string>): Promise<RssDrain> {
  return withTarget(label, async (target) => {
    let peak = 0
    const perSecWallClock = await drainBacklog(target, settings.rssN, env, (pid) => {
      peak = Math.max(peak, readRss(pid))
    })
    return { backlog: settings.rssN, peakMB: peak / 1024 / 1024, perSecWallClock }
  })
}

export const ROWS: readonly BenchRow[] = [
  {
    id: '1',
    async run({ seconds }) {
      const ceilingA = await withProc(startBareFastify, async (bare) => {
        await load(bare.url, { connections: 50, seconds: Math.min(WARMUP_SECONDS, seconds), body: singleBody })
        return load(bare.url, { connections: 50, seconds, body: singleBody })
      })
      log('ceiling A', ceilingA)
      return { ceilingA }
    },
    table: ({ ceilingA }) => (ceilingA ? [`| 1 | ceiling A: bare Fastify, same JSON body, 50 conn | ${f(ceilingA.rps)} req/s, p99 ${f(ceilingA.p99)} ms | — |`] : [])
  },
  {
    id: '2',
    async run({ seconds }) {
      const ceilingB = await withTarget('raw', (target) =>
        withDatabase(target, async (db) => {
          const lanes = PG_ADMIN ? 10 : 1
          return {
            single: await rawInserts(db, 1, seconds / 2, PG_ADMIN ? 50 : 1),
            batch100: await rawInserts(db, 100, seconds / 2, lanes),
            batch1000: await rawInserts(db, 1000, seconds / 2, lanes)
          }
        })
      )
      log('ceiling B', ceilingB)
      return { ceilingB }
    },
    table: ({ ceilingB }) =>
      ceilingB
        ? [
            `| 2 | ceiling B: raw INSERTs (1 / 100 / 1000 rows per statement) | ${f(ceilingB.single)} / ${f(ceilingB.batch100)} / ${f(ceilingB.batch1000)} rows/s | — |`
          ]
        : []
  },
  {
    // 3 + 4: ingest with the worker off, so ingest alone is measured (the drain is row 5)
    id: '3',
    async run({ seconds }, { ceilingA, ceilingB }) {
      const measured = await withTarget('ingest', (target) =>
        withProc(
          () => startServer({ ...target.env, WORKER_ENABLED: 'false' }),
          async (srv) => {
            await load(srv.url, { connections: 50, seconds: Math.min(WARMUP_SECONDS, seconds), body: singleBody })
            const c50 = await load(srv.url, { connections: 50, seconds, body: singleBody })
            const c100 = await load(srv.url, { connections: 100, seconds, body: singleBody })
            const b100 = await load(srv.url, { connections: 8, seconds, body: batchOf(100), batch: true })
            const b1000 = await load(srv.url, { connections: 4, seconds, body: batchOf(1000), batch: true })
            return { c50, c100, b100, b1000 }
          }
        )
      )
      const { c50, c100, b100, b1000 } = measured
      const single = { c50, c100, ratioToA: ceilingA ? c50.rps / ceilingA.rps : null }
      const batch = {
        b100: { ...b100, conversationsPerSec: b100.rps * 100, ratioToB: ceilingB ? (b100.rps * 100) / ceilingB.batch100 : null },
        b1000: { ...b1000, conversationsPerSec: b1000.rps * 1000, ratioToB: ceilingB ? (b1000.rps * 1000) / ceilingB.batch1000 : null }
      }
      log('ingest', single, batch)
      return { single, batch }
    },
    table: ({ single, batch, ceilingA }) =>
      single && batch
        ? [
            `| 3 | single-POST ingest, 50 conn | ${f(single.c50.rps)} req/s, p50 ${f(single.c50.p50)} ms, p99 ${f(single.c50.p99)} ms | ${pct(single.ratioToA, 'A')} |`,
            `| 3 | single-POST ingest, 100 conn | ${f(single.c100.rps)} req/s, p50 ${f(single.c100.p50)} ms, p99 ${f(single.c100.p99)} ms | ${pct(ceilingA ? single.c100.rps / ceilingA.rps : null, 'A')} |`,
            `| 4 | batch ingest, 100 per request | ${f(batch.b100.conversationsPerSec)} conv/s | ${pct(batch.b100.ratioToB, 'B(100)')} |`,
            `| 4 | batch ingest, 1000 per request | ${f(batch.b1000.conversationsPerSec)} conv/s | ${pct(batch.b1000.ratioToB, 'B(1000)')} |`
          ]
        : []
  },
  {
    // 5a: the local analyzer drains a backlog; 5b: the same through the fake model
    id: '5',
    async run({ drainN, modelDrainN }) {
      const drainLocal = await withTarget('drain', async (target) => {
        const perSecWallClock = await drainBacklog(target, drainN, {})
        return { n: drainN, perSec: await withDatabase(target, drainRate), perSecWallClock }
      })
      log('local drain', drainLocal)
      const fake = await startFakeModelServer({ latencyMs: MODEL_LATENCY_MS, port: 0 })
      try {
        const modelEnv = {
          MODEL_PROVIDER: 'openai-compatible',
          MODEL_BASE_URL: fake.url,
          MODEL_NAME: 'fake-1',
          BATCH_MAX: String(MODEL_BATCH_MAX),
          BATCH_INITIAL: String(MODEL_BATCH_MAX),
          WORKER_CONCURRENCY: String(MODEL_CONCURRENCY)
        }
        const drainModel = await withTarget('model', async (target) => {
          const perSecWallClock = await drainBacklog(target, modelDrainN, modelEnv)
          const perSec = await withDatabase(target, drainRate)
          const bound = (MODEL_BATCH_MAX * MODEL_CONCURRENCY) / (MODEL_LATENCY_MS / 1000)
          return { n: modelDrainN, perSec, perSecWallClock, bound, ratio: perSec / bound }
        })
        log('model drain', drainModel)
        return { drainLocal, drainModel }
      } finally {
        await fake.close()
      }
    },
    table: ({ drainLocal, drainModel }) => [
      ...(drainLocal
        ? [`| 5 | drain, local analyzer, ${f(drainLocal.n)} backlog | ${f(drainLocal.perSec)} conv/s (wall clock ${f(drainLocal.perSecWallClock)}) | — |`]
        : []),
      ...(drainModel
        ? [
            `| 5 | drain, fake model at ${MODEL_LATENCY_MS} ms, ${f(drainModel.n)} backlog | ${f(drainModel.perSec)} conv/s | ${pct(drainModel.ratio, `${f(drainModel.bound)}/s (batch × concurrency / latency)`)} |`
          ]
        : [])
    ]
  },
  {
    // ingest → insight latency at half of what the service sustains with its worker on
    id: '6',
    async run({ seconds }, { single, drainLocal }) {
      const latency = await withTarget('latency', async (target) => {
        // Half the maximum the service can sustain with its worker on: the lower of the
        // single-POST maximum (row 3) and the local drain rate (row 5). Offering half of
        // ingest alone would outrun the analyzer on one core and measure a growing backlog.
        const sustainable = Math.min(single?.c50.rps ?? Number.POSITIVE_INFINITY, drainLocal?.perSec ?? Number.POSITIVE_INFINITY)
        const rate = Math.max(1, Math.floor(Number.isFinite(sustainable) ? sustainable / 2 : 500))
        const achieved = await withProc(
          () => startServer(target.env),
          async (s) => {
            const L = await load(s.url, { connections: 50, seconds, body: singleBody, overallRate: rate })
            await waitDrained(s.url)
            return L.rps
          }
        )
        const [lat] = await withDatabase(target, (db) =>
          db.query<{ p50: number; p99: number; n: number }>(sql`
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.created_at - c.received_at))::float8 AS p50,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM i.created_at - c.received_at))::float8 AS p99,
                   count(*)::int AS n
            FROM insights i JOIN conversations c ON c.id = i.conversation_id`)
        )
        return { offeredRps: rate, achievedRps: achieved, insights: lat!.n, p50ms: lat!.p50 * 1000, p99ms: lat!.p99 * 1000 }
      })
      log('latency', latency)
      return { latency }
    },
    table: ({ latency }) =>
      latency
        ? [
            `| 6 | ingest→insight latency, worker on, ${f(latency.offeredRps)} req/s offered (half the sustainable max) (${f(latency.achievedRps)} achieved) | p50 ${f(latency.p50ms)} ms, p99 ${f(latency.p99ms)} ms | — |`
          ]
        : []
  },
  {
    // peak RSS while a large backlog drains: as npm start runs it, and (7b) with the
    // container's heap flags (the Dockerfile's NODE_OPTIONS)
    id: '7',
    async run(settings) {
      const rss = await drainWatchingRss('rss', settings, {})
      log('rss', rss)
      const nodeOptions = /^ENV NODE_OPTIONS="([^"]+)"/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1]
      if (!nodeOptions) return { rss }
      const rssContainer = { ...(await drainWatchingRss('rssdocker', settings, { NODE_OPTIONS: nodeOptions })), nodeOptions }
      log('rss (container heap flags)', rssContainer)
      return { rss, rssContainer }
    },
    table: ({ rss, rssContainer }) => [
      ...(rss ? [`| 7 | peak RSS while ${f(rss.backlog)} backlog drains (npm start) | ${f(rss.peakMB)} MB, drained at ${f(rss.perSecWallClock)} conv/s | — |`] : []),
      ...(rssContainer
        ? [
            `| 7b | the same with the image's NODE_OPTIONS (${rssContainer.nodeOptions}) | ${f(rssContainer.peakMB)} MB, drained at ${f(rssContainer.perSecWallClock)} conv/s | — |`
          ]
        : [])
    ]
  }
]
