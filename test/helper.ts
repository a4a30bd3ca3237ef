// One way to build the app for a test, on either back end, and close it after.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import pino, { type Logger } from 'pino'
import { type AppDeps, buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config.ts'
import { type Database, migrated } from '../src/db/client.ts'
import { migratePglite } from '../src/db/migrate.ts'
import { pgliteBackend } from '../src/db/pglite.ts'
import { buildMetricsServer } from '../src/metrics-server.ts'

type T = { teardown(fn: () => unknown): void }

export type BackendName = 'pglite' | 'postgres'

/** PGlite always; real PostgreSQL too when DATABASE_URL is set (CI sets it). */
export function backends(): BackendName[] {
  return process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite']
}

/** A database of its own for one test, dropped afterwards: tests run in parallel. */
export async function freshPostgresUrl(t: T): Promise<string> {
  const admin = process.env.DATABASE_URL
  if (!admin) throw new Error('DATABASE_URL is not set')
  const name = `gleaner_t_${randomBytes(6).toString('hex')}`
  const client = new pg.Client({ connectionString: admin })
  await client.connect()
  await client.query(`CREATE DATABASE ${name}`)
  await client.end()
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: admin })
    await c.connect()
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await c.end()
  })
  const url = new URL(admin)
  url.pathname = `/${name}`
  return url.toString()
}

export function tempDir(t: T, prefix = 'gleaner-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * Environment that puts an app on the given back end (a fresh database each call). A given
 * PGlite folder is seeded from the migrated image (see below), so its first open is a
 * reopen, not an initdb; test/db/client.test.ts covers opening a new folder for real.
 */
export async function backendEnv(t: T, backend: BackendName, opts: { dataDir?: string } = {}): Promise<Record<string, string>> {
  if (backend === 'postgres') return { DATABASE_URL: await freshPostgresUrl(t) }
  if (opts.dataDir) await seedDataDir(opts.dataDir)
  return { DATA_DIR: opts.dataDir ?? 'memory://' }
}

/** Writes the migrated, empty database image into `dir`, a folder nobody has opened yet. */
export async function seedDataDir(dir: string): Promise<void> {
  const db = await PGlite.create(dir, { loadDataDir: await migratedPgliteImage() })
  await db.close()
}

/** Quick timings so tests do not wait on production-sized intervals. */
export const FAST = {
  LOG_LEVEL: 'silent',
  AUTH: 'off',
  SWEEP_INTERVAL_MS: '50',
  RETRY_BASE_MS: '10',
  SHUTDOWN_TIMEOUT_MS: '2000'
}

export function testConfig(env: Record<string, string | undefined>) {
  return loadConfig({ ...FAST, ...env })
}

/** A test's database holds a few thousand rows: 16MB of page cache (not 128) keeps parallel test processes small. */
const SMALL_PGLITE = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB']

let pgliteImage: Promise<Blob> | undefined
/**
 * A migrated, empty PGlite database as an image, made once per test process. A fresh
 * in-memory PGlite runs initdb, which takes 5 to 15 s on a busy 2-core machine; one loaded
 * from this image is ready in about one. Same schema, same migrations table: the app's
 * own migrate step still runs on it and finds nothing to do.
 */
function migratedPgliteImage(): Promise<Blob> {
  pgliteImage ??= (async () => {
    const db = await PGlite.create('memory://')
    await migratePglite(db)
    const image = await db.dumpDataDir('none')
    await db.close()
    return image
  })()
  return pgliteImage
}

/** An empty in-memory database, migrated, from the shared image (see above). */
export async function openMemoryDatabase(logger: Logger = pino({ level: 'silent' })): Promise<Database> {
  const client = await PGlite.create('memory://', { loadDataDir: await migratedPgliteImage(), startParams: SMALL_PGLITE })
  return migrated(await pgliteBackend(client, 'memory:// (test image)'), logger)
}

export async function buildTestApp(t: T, env: Record<string, string | undefined>, deps: AppDeps = {}) {
  const config = testConfig(env)
  const fromImage = !config.DATABASE_URL && config.DATA_DIR === 'memory://' && !deps.database && !deps.openDatabase
  const app = await buildApp(config, {
    logger: pino({ level: 'silent' }),
    ...(fromImage ? { openDatabase: (_config, logger) => openMemoryDatabase(logger) } : {}),
    ...deps
  })
  t.teardown(() => app.close())
  return app
}

/** Listens on a free loopback port; resolves to the base URL. */
export async function listen(app: Awaited<ReturnType<typeof buildApp>>): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  return `http://127.0.0.1:${addr.port}`
}

/**
 * The metrics listener src/server.ts starts when METRICS_PORT is set, for `app` built from
 * the same `env`, on a free loopback port (not METRICS_PORT); closed in t.teardown.
 */
export async function listenMetrics(t: T, app: Awaited<ReturnType<typeof buildApp>>, env: Record<string, string | undefined>): Promise<string> {
  const server = await buildMetricsServer(app.metrics, testConfig(env), pino({ level: 'silent' }))
  t.teardown(() => server.close())
  await server.listen({ port: 0, host: '127.0.0.1' })
  const addr = server.server.address()
  if (!addr || typeof addr === 'string') throw new Error('no address')
  return `http://127.0.0.1:${addr.port}`
}

/**
 * How long a test waits for a condition before it fails. A hang guard, not a bound on
 * speed: on a 2-core machine loaded many times over by other test runs, what takes a second
 * idle can take a minute. Tests assert what happens, never how fast; a hung wait still fails.
 */
export const WAIT_LIMIT_MS = 120_000

export async function waitFor<V>(
  fn: () => Promise<V | undefined | false | null> | V | undefined | false | null,
  { timeoutMs = WAIT_LIMIT_MS, intervalMs = 25, what = 'condition' } = {}
): Promise<V> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/**
 * Empties tables under a running app. The worker's sweep reads the same tables and takes
 * its locks in its own order, so TRUNCATE can lose a deadlock to it (40P01); PostgreSQL's
 * advice is to retry the transaction, which is what this does.
 */
export async function truncate(database: Pick<Database, 'raw'>, tables: string[]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await database.raw(`TRUNCATE ${tables.join(', ')}`, [])
      return
    } catch (err) {
      const code = (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code
      if (code !== '40P01' || attempt >= 5) throw err
    }
  }
}

let seq = 0
/** A conversation worth analysing (passes the prefilter), unique unless told otherwise. */
export function conversation(over: Record<string, unknown> = {}) {
  seq++
  return {
    source: 'web-chat',
    external_id: `ext-${process.pid}-${Date.now()}-${seq}`,
    messages: [
      { role: 'user', content: `My invoice number ${seq} is wrong, I was charged twice this month.` },
      { role: 'assistant', content: 'Sorry about that, let me check.' }
    ],
    ...over
  }
}

/** fetch's json() is typed unknown; tests read what the contract says is there. */
// biome-ignore lint/suspicious/noExplicitAny: test bodies are checked by assertions, not types
export const body = (res: Response): Promise<any> => res.json()
