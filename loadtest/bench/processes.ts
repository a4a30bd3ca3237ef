// Processes the bench starts: the server and ceiling A's bare Fastify. Each listens on a
// port of its own choosing (PORT=0) and tells its address over the IPC channel it was
// started with, so the bench never collides with, or measures, anything else on this
// machine. Readiness then asks the address who answers: the instance id (or pid) must be
// the one this bench gave the child it started.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { buildDist, nodeArgsFor } from '../../scripts/build.ts'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** How long a child may take to listen: PGlite's first open plus migrations on a busy machine. */
const START_TIMEOUT_MS = 180_000
/** Between readiness probes once the child said it listens. */
const PROBE_INTERVAL_MS = 100

const cores = availableParallelism()
/** The server gets the last core and this load generator the first, where there are two or more. */
export const pinned = cores >= 2 && spawnSync('sh', ['-c', 'command -v taskset']).status === 0
const SERVER_CORE = String(cores - 1)
/** Pins the calling process (the load generator) to the first core; servers get the last. */
export function pinLoadGenerator(): void {
  if (pinned) spawnSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })
}

export interface Proc {
  url: string
  pid: number
  child: ChildProcess
  stop(): Promise<void>
}

export interface Who {
  pid?: number
  instance_id?: string
}

let seq = 0

/**
 * Starts `script` and resolves once it listens and answers as itself. `identify` reads the
 * readiness response: who answered. The child is killed if it does not get there.
 */
export async function startProc(
  script: string,
  env: Record<string, string>,
  probe: { path: string; identify: (body: unknown) => Who },
  nodeFlags: readonly string[] = []
): Promise<Proc> {
  const instanceId = `bench-${process.pid}-${++seq}`
  const childEnv = { PATH: process.env.PATH ?? '', ...(process.env.NODE_OPTIONS ? { NODE_OPTIONS: process.env.NODE_OPTIONS } : {}), ...env, PORT: '0', INSTANCE_ID: instanceId }
  // BENCH_CPU_PROF=dir profiles every server started (node refuses --cpu-prof in NODE_OPTIONS)
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []
  const args = [...prof, ...nodeFlags, ...nodeArgsFor(script)]
  const stdio: ['ignore', 'ignore', 'inherit', 'ipc'] = ['ignore', 'ignore', 'inherit', 'ipc']
  const child = pinned
    ? spawn('taskset', ['-c', SERVER_CORE, process.execPath, ...args], { cwd: ROOT, env: childEnv, stdio })
    : spawn(process.execPath, args, { cwd: ROOT, env: childEnv, stdio })
  const proc: Proc = { url: '', pid: child.pid ?? -1, child, stop: () => stopChild(child) }
  try {
    const said = await listeningMessage(child, script)
    proc.url = said.url
    // under taskset the child we spawned is taskset, which execs node: same pid
    await waitReady(said.url, probe, { pid: said.pid, instance_id: instanceId }, () => child.exitCode !== null)
    return proc
  } catch (err) {
    await proc.stop()
    throw err
  }
}

/** The child's own 'listening' message over IPC: where it listens, from the only process that can say. */
function listeningMessage(child: ChildProcess, script: string): Promise<{ url: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${script} did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
    const onMessage = (m: unknown) => {
      const msg = m as { type?: string; url?: string; pid?: number }
      if (msg?.type === 'listening' && typeof msg.url === 'string' && typeof msg.pid === 'number') done(undefined, { url: msg.url, pid: msg.pid })
    }
    const onExit = (code: number | null) => done(new Error(`${script} exited with ${code} before listening`))
    function done(err?: Error, value?: { url: string; pid: number }) {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      if (err) reject(err)
      else resolve(value!)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/**
 * Probes `url + probe.path` until it answers as `expected` (same pid, or same instance id).
 * An answer from anyone else is an error at once: the bench would be measuring a stranger.
 */
export async function waitReady(
  url: string,
  probe: { path: string; identify: (body: unknown) => Who },
  expected: Who,
  exited: () => boolean = () => false
): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (exited()) throw new Error(`the process behind ${url} exited before it was ready`)
    let who: Who | undefined
    try {
      const r = await fetch(url + probe.path)
      if (r.ok) who = probe.identify(await r.json())
      else await r.arrayBuffer()
    } catch {
      who = undefined // not answering yet
    }
    if (who) {
      // whatever the answer names itself by (a pid, an instance id) must be what we expect
      const named = (Object.keys(who) as (keyof Who)[]).filter((k) => who[k] !== undefined)
      const same = named.length > 0 && named.every((k) => who[k] === expected[k])
      if (!same) throw new Error(`${url} answers as ${JSON.stringify(who)}, not as the process the bench started (${JSON.stringify(expected)})`)
      return
    }
    if (Date.now() > deadline) throw new Error(`${url} was not ready within ${START_TIMEOUT_MS} ms`)
    await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS))
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
  })
}

/** Runs `fn` with a started process and stops it afterwards, whatever `fn` does. */
export async function withProc<T>(start: () => Promise<Proc>, fn: (p: Proc) => Promise<T>): Promise<T> {
  const p = await start()
  try {
    return await fn(p)
  } finally {
    await p.stop()
  }
}

/** The bench's server settings: the pipeline is measured, not key look-ups or log lines. */
const SERVER_ENV = {
  HOST: '127.0.0.1',
  AUTH: 'off', // measures the pipeline, not key look-ups (cached in memory anyway)
  LOG_LEVEL: 'warn', // per-request info lines cost ~10%: production may keep them
  RATE_LIMIT_ANONYMOUS: '10000000',
  SWEEP_INTERVAL_MS: '200',
  BACKLOG_HARD_LIMIT: '100000000'
}

/**
 * The server as `npm start` runs it: src/ compiled (scripts/build.ts), here into a folder
 * of this bench process's own, built once and removed when it exits.
 */
const BUILD_DIR = `.build-bench-${process.pid}`
let built: Promise<void> | undefined
function buildOnce(): Promise<void> {
  if (!built) {
    process.once('exit', () => rmSync(`${ROOT}${BUILD_DIR}`, { recursive: true, force: true }))
    built = buildDist(`${ROOT}${BUILD_DIR}`)
  }
  return built
}

/** The node flags of package.json's start script (`node <flags> dist/server.js`), which the bench runs with too. */
export const START_FLAGS: readonly string[] = (() => {
  const start: string = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')).scripts.start
  const words = start.trim().split(/\s+/)
  if (words[0] !== 'node' || words.at(-1) !== 'dist/server.js') throw new Error(`package.json's start script is not "node [flags] dist/server.js": ${start}`)
  return words.slice(1, -1)
})()

export async function startServer(env: Record<string, string>) {
  await buildOnce()
  return startProc(
    `${BUILD_DIR}/server.js`,
    { ...SERVER_ENV, ...env },
    { path: '/health', identify: (b) => ({ instance_id: (b as { instance_id?: string }).instance_id }) },
    START_FLAGS
  )
}

export const startBareFastify = () => startProc('loadtest/bare-fastify.ts', {}, { path: '/', identify: (b) => ({ pid: (b as { pid?: number }).pid }) })
