// A database outage under steady ingest: while PostgreSQL is down, ingest answers 503
// UNAVAILABLE with Retry-After (never a 500, never a 202 it did not store), readiness fails
// and liveness does not; when PostgreSQL is back, the same Gleaner process recovers on its
// own and every conversation it acknowledged is stored and analysed.
//
// The test runs a PostgreSQL cluster of its own, so stopping it disturbs no other test.

import pg from 'pg'
import t from 'tap'
import { CONVERSATION_STATUSES_SQL } from '../../src/db/conversations.ts'
import { body, buildTestApp, conversation, listen, waitFor } from '../helper.ts'
import { pgClusterSkip, startCluster } from '../pg-cluster.ts'

const skip = pgClusterSkip

type Phase = 'before' | 'outage' | 'after'
interface Seen {
  phase: Phase
  route: 'single' | 'batch'
  status: number | 'network error'
  code?: string
  retryAfter: string | null
}

t.test('PostgreSQL stops and starts again: 503 UNAVAILABLE meanwhile, recovery without a restart, nothing acknowledged lost', { skip }, async (t) => {
  const cluster = await startCluster(t)
  const app = await buildTestApp(t, {
    DATABASE_URL: cluster.url,
    LEASE_SECONDS: '5',
    SWEEP_INTERVAL_MS: '200',
    RATE_LIMIT_ANONYMOUS: '10000000'
  })
  const base = await listen(app)

  let phase: Phase = 'before'
  const seen: Seen[] = []
  const acked = new Set<string>()
  let producing = true

  const post = async (route: Seen['route'], payload: unknown) => {
    const started = phase
    try {
      const res = await fetch(`${base}/api/v1/conversations${route === 'batch' ? '/batch' : ''}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(payload)
      })
      const json = await body(res)
      seen.push({ phase: started, route, status: res.status, code: json?.error?.code, retryAfter: res.headers.get('retry-after') })
      return { res, json }
    } catch {
      seen.push({ phase: started, route, status: 'network error', retryAfter: null })
      return { res: undefined, json: undefined }
    }
  }

  // producers that do what the contract asks: on 503, wait and send the same conversation
  // again (its external_id makes the retry safe); a 200 duplicate is an acknowledgement too
  const singleProducer = async () => {
    const deadline = Date.now() + 100_000
    let c = conversation()
    while (producing && Date.now() < deadline) {
      const { res, json } = await post('single', c)
      if (res?.status === 202 || res?.status === 200) {
        acked.add(json.id)
        c = conversation()
      } else await new Promise((r) => setTimeout(r, 25))
    }
  }
  const batchProducer = async () => {
    const deadline = Date.now() + 100_000
    let batch = Array.from({ length: 10 }, () => conversation())
    while (producing && Date.now() < deadline) {
      const { res, json } = await post('batch', { conversations: batch })
      if (res?.status === 207) {
        for (const r of json.results) if (r.id) acked.add(r.id)
        batch = Array.from({ length: 10 }, () => conversation())
      } else await new Promise((r) => setTimeout(r, 25))
    }
  }
  const producers = Promise.all([singleProducer(), singleProducer(), batchProducer()])
  t.teardown(async () => {
    producing = false
    await producers
  })
  const countWhere = (f: (s: Seen) => boolean) => seen.filter(f).length

  await waitFor(() => acked.size >= 100, { what: 'steady ingest before the outage' })

  phase = 'outage'
  await cluster.stop()
  await waitFor(() => countWhere((s) => s.phase === 'outage' && s.status === 503 && s.route === 'single') >= 10, {
    what: 'single ingest answering 503'
  })
  await waitFor(() => countWhere((s) => s.phase === 'outage' && s.status === 503 && s.route === 'batch') >= 3, {
    what: 'batch ingest answering 503'
  })
  const ready = await fetch(`${base}/health/ready`)
  const readyBody = (await ready.json()) as { status: string; checks: { database: { ok: boolean } } }
  t.equal(ready.status, 503, 'not ready while the database is down')
  t.match(readyBody, { status: 'not_ready', checks: { database: { ok: false } } }, 'readiness names the database')
  const live = await fetch(`${base}/health`)
  t.equal(live.status, 200, 'still alive: a database outage is no reason to restart the process')
  await live.body?.cancel()
  // the worker meets the outage too (claims and sweeps fail) and must keep backing off, not die
  // and /health says why it is paused, so an operator sees the cause at a glance
  await waitFor(
    async () => {
      const w = (await (await fetch(`${base}/health`)).json()) as { worker_running: boolean; status: string; paused_reason: string | null }
      return w.worker_running && w.status === 'degraded' && w.paused_reason === 'database_unavailable'
    },
    { what: 'degraded: database_unavailable' }
  )
  const outage = seen.filter((s) => s.phase === 'outage')

  phase = 'after'
  await cluster.start()
  await waitFor(async () => (await fetch(`${base}/health/ready`)).status === 200, { what: 'ready again' })
  const ackedBeforeRecovery = acked.size
  await waitFor(() => countWhere((s) => s.phase === 'after' && s.status === 202) >= 20, { what: '202s again after the outage' })
  await waitFor(() => countWhere((s) => s.phase === 'after' && s.status === 207) >= 5, { what: 'batches stored again' })
  producing = false
  await producers
  t.ok(acked.size > ackedBeforeRecovery, 'ingest recovered without restarting Gleaner')

  const statuses: Record<string, number> = {}
  for (const s of outage) statuses[`${s.route} ${s.status}`] = (statuses[`${s.route} ${s.status}`] ?? 0) + 1
  t.comment(`statuses during the outage: ${JSON.stringify(statuses)}`)
  t.equal(countWhere((s) => s.status === 500), 0, 'never a 500, before, during or after')
  t.equal(countWhere((s) => s.status === 'network error'), 0, 'every request got an answer')
  t.same(
    outage.filter((s) => s.status !== 503 && s.status !== 202 && s.status !== 200 && s.status !== 207),
    [],
    'during the outage ingest answers 503 (or acknowledges what it stored before the cut)'
  )
  const unavailable = outage.filter((s) => s.status === 503)
  t.ok(unavailable.length > 0, `${unavailable.length} answers of 503 during the outage`)
  t.ok(
    unavailable.every((s) => s.code === 'UNAVAILABLE' && s.retryAfter !== null && Number(s.retryAfter) > 0),
    'every 503 says UNAVAILABLE and carries Retry-After'
  )

  // every acknowledged id, from before, during and after, is stored and ends analysed
  const db = new pg.Client({ connectionString: cluster.url })
  await db.connect()
  t.teardown(() => db.end())
  const ids = [...acked]
  const counts = await waitFor(
    async () => {
      const { rows } = await db.query<{ status: string; n: number }>(
        `WITH s AS (${CONVERSATION_STATUSES_SQL}) SELECT status, count(*)::int AS n FROM s WHERE id = ANY($1::uuid[]) GROUP BY status`,
        [ids]
      )
      const c = Object.fromEntries(rows.map((r) => [r.status, r.n]))
      return !c.pending && !c.processing && c
    },
    { intervalMs: 200, what: 'every acknowledged conversation settled' }
  )
  t.equal(counts.analyzed, ids.length, `all ${ids.length} acknowledged conversations stored and analysed`)
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM insights WHERE conversation_id = ANY($1::uuid[])', [ids])
  t.equal(rows[0]!.n, ids.length, 'one insight each')

  // a connection the outage broke and nobody gave back would make close wait for ever (the
  // pool ends only when every client is back): bound the wait so a leak fails here, by name
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    app.close().then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), 30_000)
    })
  ])
  clearTimeout(timer)
  t.ok(closed, 'Gleaner still shuts down after the outage: every database connection came back to the pool')
})
