// Gleaner as operators run it: `node --import tsx src/server.ts` in a process of its own,
// configured by its environment, for the end-to-end suites that kill, restart or multiply
// processes. Every process started here is SIGKILLed in t.teardown.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import pg from 'pg'
import { nodeArgsFor } from '../../scripts/build.ts'
import { CONVERSATION_STATUSES_SQL } from '../../src/db/conversations.ts'
import { WAIT_LIMIT_MS, waitFor } from '../helper.ts'

type T = { teardown(fn: () => unknown): void; comment(...args: unknown[]): void; passing(): boolean }

const ROOT = new URL('../..', import.meta.url).pathname
/** Output lines kept per process, shown when a test fails: enough for the last errors. */
const LOG_LINES_KEPT = 200

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

export interface ServerProcess {
  base: string
  port: number
  instanceId: string
  child: ChildProcess
  /** the last lines the process wrote (stdout and stderr) */
  output(): string
  /** SIGKILL: no shutdown hook runs, claims stay leased, as in a crash or an OOM kill */
  kill(): Promise<void>
}

/**
 * Starts a server process and resolves once /health/ready answers 200. The environment is
 * only what is given (plus PATH): nothing leaks in from the test runner's.
 */
export async function startServer(t: T, env: Record<string, string>, { readyTimeoutMs = WAIT_LIMIT_MS, script = 'src/server.ts' } = {}): Promise<ServerProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort()
  const instanceId = env.INSTANCE_ID ?? `e2e-${port}`
  // `script`: compiled JavaScript (as npm start runs it) or TypeScript through tsx
  const child = spawn(process.execPath, nodeArgsFor(script), {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', LOG_LEVEL: 'warn', AUTH: 'off', ...env, PORT: String(port), INSTANCE_ID: instanceId },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: string[] = []
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    if (lines.length > LOG_LINES_KEPT) lines.splice(0, lines.length - LOG_LINES_KEPT)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = once(child, 'exit')
  const alive = () => child.exitCode === null && child.signalCode === null
  const kill = async () => {
    if (!alive()) return
    child.kill('SIGKILL')
    await exited
  }
  const output = () => lines.join('\n')
  // a test process that ends without its teardown must not leave servers behind
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  t.teardown(async () => {
    process.off('exit', killOnExit)
    if (!t.passing()) t.comment(`output of ${instanceId}:\n${output()}`)
    await kill()
  })
  const base = `http://127.0.0.1:${port}`
  await waitFor(
    async () => {
      if (!alive()) throw new Error(`${instanceId} exited (${child.exitCode ?? child.signalCode}): ${output().slice(-2000)}`)
      return (await fetch(`${base}/health/ready`)).status === 200
    },
    { timeoutMs: readyTimeoutMs, intervalMs: 100, what: `${instanceId} ready` }
  ).catch((err) => {
    // a process that died is a failure of its own; do not keep waiting on it
    throw new Error(`${(err as Error).message}\n${output().slice(-2000)}`)
  })
  return { base, port, instanceId, child, output, kill }
}

/** A pool for the test's own look at the database; closed in t.teardown. */
export function testPool(t: T, connectionString: string): pg.Pool {
  const pool = new pg.Pool({ connectionString, max: 2 })
  // the database is dropped with FORCE at the end: an idle connection losing it is expected
  pool.on('error', () => {})
  t.teardown(() => pool.end())
  return pool
}

export async function statusCounts(pool: pg.Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: string; n: number }>(`WITH s AS (${CONVERSATION_STATUSES_SQL}) SELECT status, count(*)::int AS n FROM s GROUP BY status`)
  return Object.fromEntries(rows.map((r) => [r.status, r.n]))
}

/** The sum of a counter over all its label sets in a Prometheus text exposition. */
export function counterTotal(metricsText: string, name: string): number {
  let total = 0
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

/** Every acknowledged id, its row, and exactly-once insights: what both crash and scale-out prove. */
export async function checkAcknowledged(pool: pg.Pool, ids: string[]) {
  const { rows } = await pool.query<{ id: string; status: string; insights: number }>(
    `WITH s AS (${CONVERSATION_STATUSES_SQL})
     SELECT s.id, s.status, (SELECT count(*)::int FROM insights i WHERE i.conversation_id = s.id) AS insights
     FROM s WHERE s.id = ANY($1::uuid[])`,
    [ids]
  )
  const byStatus: Record<string, number> = {}
  for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1
  const wrongInsightCount = rows.filter((r) => (r.status === 'analyzed' ? r.insights !== 1 : r.insights !== 0)).length
  const [dupes] = (
    await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM (SELECT conversation_id FROM insights GROUP BY conversation_id HAVING count(*) > 1) d'
    )
  ).rows
  const [totals] = (
    await pool.query<{ insights: number; analyzed: number }>(
      `SELECT (SELECT count(*)::int FROM insights) AS insights,
              (SELECT count(*)::int FROM (${CONVERSATION_STATUSES_SQL}) s WHERE status = 'analyzed') AS analyzed`
    )
  ).rows
  return {
    present: rows.length,
    byStatus,
    wrongInsightCount,
    duplicateInsights: dupes!.n,
    insights: totals!.insights,
    analyzed: totals!.analyzed
  }
}
