// A PostgreSQL cluster of a test's own, to stop and start at will without disturbing the
// other tests that share CI's server.
import { execFile, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './e2e/server-process.ts'

const run = promisify(execFile)
const PGBIN = '/usr/lib/postgresql/15/bin'

export const pgClusterSkip = !process.env.DATABASE_URL
  ? 'needs a real PostgreSQL: set DATABASE_URL (CI sets it)'
  : !existsSync(join(PGBIN, 'initdb'))
    ? `PostgreSQL 15 binaries not found in ${PGBIN} (apt-get install -y postgresql-15)`
    : false

/** A throwaway cluster; PostgreSQL refuses to run as root, so it runs as `postgres`. */
export async function startCluster(t: { teardown(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'gleaner-pg-'))
  const data = join(dir, 'data')
  const { uid, gid } = await userIds('postgres')
  mkdirSync(data, { mode: 0o700 })
  chownSync(dir, uid, gid)
  chownSync(data, uid, gid)
  const port = await freePort()
  const pgAs = (bin: string, ...args: string[]) => run('runuser', ['-u', 'postgres', '--', join(PGBIN, bin), ...args])
  let running = false
  // a test process that ends without its teardown (an uncaught error, a hung close) must
  // not leave a postmaster behind: 'exit' handlers may only do synchronous work
  const stopOnExit = () => {
    if (running) spawnSync('runuser', ['-u', 'postgres', '--', join(PGBIN, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop'])
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', stopOnExit)
  t.teardown(async () => {
    process.off('exit', stopOnExit)
    if (running) await pgAs('pg_ctl', '-D', data, '-m', 'immediate', '-w', 'stop').catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  })
  await pgAs('initdb', '-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync')
  const cluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      await pgAs('pg_ctl', '-D', data, '-l', join(dir, 'log'), '-w', '-o', `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1`, 'start').catch((err) => {
        // pg_ctl says only "examine the log output": put the log's end in the error
        const log = existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8').slice(-2000) : '(no log)'
        throw new Error(`${(err as Error).message}\n${log}`)
      })
      running = true
    },
    /**
     * kill -9 of the postmaster and every backend at once, as a machine or OOM-killer crash
     * leaves it: no shutdown checkpoint, recovery from WAL on the next start
     */
    async crash() {
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
      const children = childrenOf(pid)
      for (const p of [pid, ...children]) {
        try {
          process.kill(p, 'SIGKILL')
        } catch {}
      }
      // the next start must not find a backend still attached to the old shared memory
      await waitGone([pid, ...children])
      // the lock files name a PID that a zombie may still hold (depending on what reaps it
      // here); every process of the cluster is gone, so the lock is stale
      for (const lock of [join(data, 'postmaster.pid'), join(dir, `.s.PGSQL.${port}.lock`), join(dir, `.s.PGSQL.${port}`)]) rmSync(lock, { force: true })
      running = false
    },
    /** fast: connections are cut at once, as in a failover or a crashed primary */
    async stop() {
      await pgAs('pg_ctl', '-D', data, '-m', 'fast', '-w', 'stop')
      running = false
    }
  }
  await cluster.start()
  return cluster
}

/** Linux: the processes whose parent is pid, from /proc (no procps needed) */
function childrenOf(pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // the fields after the command name, which is in parentheses and may hold spaces
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry))
    } catch {}
  }
  return out
}

async function waitGone(pids: number[]) {
  // a zombie (state Z) is gone for this purpose: it holds no shared memory, and whether
  // anyone reaps it depends on what runs as PID 1
  const alive = (p: number) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
    } catch {
      return false
    }
  }
  while (pids.some(alive)) await new Promise((r) => setTimeout(r, 20))
}

async function userIds(name: string) {
  const [uid, gid] = await Promise.all([run('id', ['-u', name]), run('id', ['-g', name])])
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
}

