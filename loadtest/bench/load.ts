// What the bench does to a running server: offered load (autocannon), backlogs to drain,
// and the figures read back from the database and /proc.
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'
import { sql } from 'drizzle-orm'
import type { Database } from '../../src/db/client.ts'
import { conversationFor } from '../workload.ts'

export interface LoadResult {
  rps: number
  p50: number
  p99: number
  non2xx: number
  errors: number
}

/** Conversations per batch request while filling a backlog: the route's default maximum. */
const FILL_BATCH = 1_000
/** Concurrent batch requests while filling: enough to keep one server core busy. */
const FILL_LANES = 4
/** Between /health reads while waiting for a drain. */
const DRAIN_POLL_MS = 200

let seq = 0
export const singleBody = () => JSON.stringify(conversationFor(seq++))
export const batchOf = (n: number) => () => JSON.stringify({ conversations: Array.from({ length: n }, () => conversationFor(seq++)) })

export async function load(
  url: string,
  opts: { connections: number; seconds: number; body: () => string; overallRate?: number; batch?: boolean }
): Promise<LoadResult> {
  const r = await autocannon({
    url: `${url}/api/v1/conversations${opts.batch ? '/batch' : ''}`,
    method: 'POST',
    connections: opts.connections,
    duration: opts.seconds,
    overallRate: opts.overallRate,
    headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: opts.body() }) }]
  })
  // completed requests over the elapsed time: autocannon's requests.average is a mean of
  // per-second samples, and a 1-second row on a loaded machine can end with none (CI saw 0)
  return { rps: r.duration > 0 ? r.requests.total / r.duration : 0, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors }
}

/** Loads a backlog of n conversations through the batch route (the worker must be off). */
export async function fillBacklog(url: string, n: number) {
  let sent = 0
  const lanes = Array.from({ length: FILL_LANES }, async () => {
    while (sent < n) {
      const size = Math.min(FILL_BATCH, n - sent)
      sent += size
      const body = JSON.stringify({ conversations: Array.from({ length: size }, () => conversationFor(seq++)) })
      const r = await fetch(`${url}/api/v1/conversations/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      if (r.status !== 207) throw new Error(`backlog fill got ${r.status}`)
      await r.arrayBuffer()
    }
  })
  await Promise.all(lanes)
}

/** Resolves once nothing is pending, processing or queued; `onTick` runs at every look. */
export async function waitDrained(url: string, onTick?: () => void) {
  for (;;) {
    onTick?.()
    const h = (await (await fetch(`${url}/health`)).json()) as { backlog: { pending: number; processing: number }; queue_size: number }
    if (h.backlog.pending + h.backlog.processing === 0 && h.queue_size === 0) return
    await new Promise((r) => setTimeout(r, DRAIN_POLL_MS))
  }
}

/** Conversations analysed per second, from the first to the last analysed_at. */
export async function drainRate(db: Database) {
  const [r] = await db.query<{ n: number; s: number }>(
    sql`SELECT count(*)::int AS n, extract(epoch FROM max(created_at) - min(created_at))::float8 AS s FROM insights`
  )
  return r!.s > 0 ? r!.n / r!.s : 0
}

export const readRss = (pid: number) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** Ceiling B: plain multi-row INSERTs, `lanes` at a time, for `seconds`; rows per second. */
export async function rawInserts(db: Database, rowsPerStatement: number, seconds: number, lanes: number) {
  let rows = 0
  const until = Date.now() + seconds * 1000
  const one = (i: number) => {
    const c = conversationFor(i)
    return sql`(gleaner_uuidv7(), ${c.source}, ${JSON.stringify(c.messages)}::jsonb, ${JSON.stringify(c.metadata)}::jsonb, md5(${String(i)}))`
  }
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (Date.now() < until) {
        const values = Array.from({ length: rowsPerStatement }, () => one(seq++))
        await db.query(sql`INSERT INTO conversations (id, source, messages, metadata, text_hash) VALUES ${sql.join(values, sql`, `)}`)
        rows += rowsPerStatement
      }
    })
  )
  return rows / seconds
}
