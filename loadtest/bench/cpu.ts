// CPU read from /proc, the one clock every process on this machine shares: the server's,
// PostgreSQL's and Redis's figures add up without converting between their own counters.
// Shared by bench:drain and bench:peers; on a shared machine, CPU per unit of work moves
// far less with the neighbours' load than any wall-clock rate does.
import { readdirSync, readFileSync } from 'node:fs'
import { sql } from 'drizzle-orm'
import type pg from 'pg'
import type { Database } from '../../src/db/client.ts'

/** Linux clock ticks per second for /proc/<pid>/stat (USER_HZ is 100 on every mainstream build). */
const TICKS_PER_S = 100

/** utime + stime (+ reaped children's, for a parent whose children come and go), in ms. */
export function cpuMs(pid: number, withChildren = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name may hold spaces: fields are counted after its closing parenthesis
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0)
    return (ticks * 1000) / TICKS_PER_S
  } catch {
    return 0 // exited
  }
}

/** CPU of the postmaster (with its reaped children) and of every live child, in ms. */
export function postgresCpuMs(postmaster: number): number {
  let total = cpuMs(postmaster, true)
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === postmaster) total += cpuMs(Number(entry))
    } catch {
      // exited between the listing and the read
    }
  }
  return total
}

export async function postmasterPid(db: Database): Promise<number> {
  const [row] = await db.query<{ dir: string }>(sql`SELECT current_setting('data_directory') AS dir`)
  return Number(readFileSync(`${row!.dir}/postmaster.pid`, 'utf8').split('\n')[0])
}

/**
 * CPU of the PostgreSQL backends connected to one database, the caller's own excluded: on a
 * cluster other work shares, the postmaster's children include strangers' backends. Polled,
 * because a backend that exits takes its counters with it; `sample()` at every tick keeps
 * each backend's last reading, so a pool that recycles a connection loses at most a tick.
 */
export function databaseBackendsCpu(client: pg.Client, database: string) {
  const seen = new Map<number, { first: number; last: number; type: string }>()
  let selfPid = -1
  const read = async (baseline: boolean) => {
    if (selfPid < 0) selfPid = Number((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid)
    const { rows } = await client.query<{ pid: number; backend_type: string }>(
      'SELECT pid, backend_type FROM pg_stat_activity WHERE datname = $1 AND pid <> $2',
      [database, selfPid]
    )
    for (const { pid, backend_type } of rows) {
      const now = cpuMs(pid)
      const s = seen.get(pid)
      // a backend first met after the start began inside the window: all its CPU is the window's
      if (s) s.last = Math.max(s.last, now)
      else seen.set(pid, { first: baseline ? now : 0, last: now, type: backend_type })
    }
  }
  return {
    /** marks the window's start: backends alive now count only what they use from here */
    start() {
      seen.clear()
      return read(true)
    },
    sample: () => read(false),
    totalMs: () => [...seen.values()].reduce((a, s) => a + s.last - s.first, 0),
    /** the same CPU by backend type: what the system's own statements cost against autovacuum's work on its tables */
    byTypeMs: () => {
      const by: Record<string, number> = {}
      for (const s of seen.values()) by[s.type] = (by[s.type] ?? 0) + s.last - s.first
      return by
    }
  }
}
