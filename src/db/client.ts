// One database handle for both back ends: a pg Pool against PostgreSQL when DATABASE_URL is
// set, else PGlite (PostgreSQL compiled to WASM) in DATA_DIR. Same schema, same queries.
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { SQL } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import { isDatabaseUnavailable } from './errors.ts'
import * as schema from './schema.ts'

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>
/** A transaction or the database itself: repository writes take either. */
export type Executor = Pick<Db, 'select' | 'insert' | 'update' | 'delete' | 'execute'>

export interface Database {
  db: Db
  kind: 'postgres' | 'pglite'
  /** rows of a raw statement, for the few queries drizzle's builder cannot say */
  query<T>(statement: SQL, executor?: Executor): Promise<T[]>
  /**
   * A hand-written statement for the hot paths (ingest, claims), skipping the query
   * builder; `name` makes it a prepared statement on PostgreSQL (parsed once per connection).
   */
  raw<T>(text: string, values: unknown[], name?: string): Promise<T[]>
  ping(): Promise<void>
  /** LISTEN on a channel; resolves to an unlisten function */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>
  notify(channel: string, payload: string): Promise<void>
  close(): Promise<void>
}

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))
// Any constant works; it only has to be the same in every Gleaner instance.
const MIGRATION_LOCK_KEY = 727_001

export async function openDatabase(config: Config, logger: Logger): Promise<Database> {
  return config.DATABASE_URL ? openPostgres(config, logger) : openPglite(config, logger)
}

async function openPostgres(config: Config, logger: Logger): Promise<Database> {
  const { default: pg } = await import('pg')
  const { drizzle } = await import('drizzle-orm/node-postgres')
  const { migrate } = await import('drizzle-orm/node-postgres/migrator')
  const pool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: config.DB_POOL_MAX,
    // fail fast while the database is down, so ingest can answer 503 instead of hanging
    connectionTimeoutMillis: 5_000,
    statement_timeout: config.DB_STATEMENT_TIMEOUT_MS || undefined,
    idleTimeoutMillis: 30_000,
    application_name: `gleaner:${config.INSTANCE_ID}`.slice(0, 63)
  })
  // An idle client losing its server emits 'error' on the pool; unhandled, it kills the process.
  pool.on('error', (err) => logger.warn({ err: { message: err.message } }, 'idle database connection lost'))
  // A checked-out client has no pool listener: drizzle's transactions hold one between
  // statements, and a server shutdown then emits 'error' on it, which, unhandled, kills the
  // process. The statement that follows fails on its own (503), so nothing to do here.
  pool.on('connect', (client) => client.on('error', () => {}))
  const db = drizzle({ client: pool, schema }) as unknown as Db
  // drizzle's transaction() on a pool sends BEGIN before its try/finally, so a BEGIN that
  // fails (a pooled connection the server has just cut) never gives its client back: each
  // outage leaks connections until the pool is dry, and pool.end() then waits for ever on
  // shutdown. Checking the client out here releases it whatever fails, and a connection
  // that failed as unavailable is destroyed rather than handed to the next caller.
  const transaction = async (fn: Parameters<Db['transaction']>[0], txConfig?: Parameters<Db['transaction']>[1]) => {
    const client = await pool.connect()
    let broken: Error | undefined
    try {
      return await (drizzle({ client, schema }) as unknown as Db).transaction(fn, txConfig)
    } catch (err) {
      if (isDatabaseUnavailable(err)) broken = err as Error
      throw err
    } finally {
      client.release(broken)
    }
  }
  db.transaction = transaction as Db['transaction']

  // drizzle's migrator takes no lock: several instances starting together would race.
  const client = await pool.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    try {
      await migrate(drizzle({ client, schema }), { migrationsFolder: MIGRATIONS_FOLDER })
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
    }
  } finally {
    client.release()
  }

  const listeners: import('pg').PoolClient[] = []
  return {
    db,
    kind: 'postgres',
    async query<T>(statement: SQL, executor: Executor = db) {
      const res = (await executor.execute(statement)) as unknown as { rows: T[] }
      return res.rows
    },
    async raw<T>(text: string, values: unknown[], name?: string) {
      const res = await pool.query({ text, values, name })
      return res.rows as T[]
    },
    async ping() {
      await pool.query('SELECT 1')
    },
    async listen(channel, onPayload) {
      // A dedicated connection holds the LISTEN. If it drops (database restart), it is
      // re-established with back-off, so streams resume without a process restart.
      let closed = false
      let current: import('pg').PoolClient | undefined
      const connect = async (): Promise<void> => {
        while (!closed) {
          try {
            const c = await pool.connect()
            current = c
            listeners.push(c)
            c.on('notification', (msg) => {
              if (msg.channel === channel && msg.payload) onPayload(msg.payload)
            })
            c.on('error', (err) => {
              logger.warn({ err: { message: err.message }, channel }, 'listen connection lost; reconnecting')
              const i = listeners.indexOf(c)
              if (i >= 0) listeners.splice(i, 1)
              c.release(true)
              if (current === c) current = undefined
              setTimeout(() => void connect(), 1_000).unref()
            })
            await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
            return
          } catch (err) {
            logger.warn({ err: { message: (err as Error).message }, channel }, 'cannot listen yet; retrying')
            await new Promise((r) => setTimeout(r, 1_000).unref())
          }
        }
      }
      await connect()
      return async () => {
        closed = true
        const c = current
        if (!c) return
        const i = listeners.indexOf(c)
        if (i >= 0) listeners.splice(i, 1)
        try {
          await c.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`)
        } catch {}
        c.release(true)
      }
    },
    async notify(channel, payload) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload])
    },
    async close() {
      for (const c of listeners.splice(0)) c.release(true)
      await pool.end()
    }
  }
}

async function openPglite(config: Config, logger: Logger): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite')
  const { drizzle } = await import('drizzle-orm/pglite')
  const { migrate } = await import('drizzle-orm/pglite/migrator')
  const inMemory = config.DATA_DIR.startsWith('memory://')
  const dataDir = inMemory ? config.DATA_DIR : resolve(config.DATA_DIR)
  const releaseLock = inMemory ? () => {} : lockDataDir(dataDir)
  let client: InstanceType<typeof PGlite>
  try {
    client = await PGlite.create(dataDir)
    const db = drizzle({ client, schema })
    await migrate(db, { migrationsFolder: MIGRATIONS_FOLDER })
  } catch (err) {
    releaseLock()
    throw err
  }
  logger.info({ data_dir: dataDir }, 'using embedded PGlite database')
  const db = drizzle({ client, schema }) as unknown as Db
  return {
    db,
    kind: 'pglite',
    async query<T>(statement: SQL, executor: Executor = db) {
      const res = (await executor.execute(statement)) as unknown as { rows: T[] }
      return res.rows
    },
    async raw<T>(text: string, values: unknown[]) {
      const res = await client.query(text, values)
      return res.rows as T[]
    },
    async ping() {
      await client.query('SELECT 1')
    },
    async listen(channel, onPayload) {
      return client.listen(channel, onPayload)
    },
    async notify(channel, payload) {
      await client.query('SELECT pg_notify($1, $2)', [channel, payload])
    },
    async close() {
      try {
        await client.close()
      } finally {
        releaseLock()
      }
    }
  }
}

/**
 * PGlite takes no lock on its folder, and two processes opening one folder silently lose
 * data. A lock file holding our pid makes the second start fail with a clear message;
 * a lock left by a dead process (a crash, SIGKILL) is taken over.
 */
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true })
  const lockPath = join(dataDir, 'gleaner.lock')
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(lockPath, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      let released = false
      return () => {
        if (released) return
        released = true
        try {
          unlinkSync(lockPath)
        } catch {}
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(lockPath, 'utf8').trim())
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new Error(
          `the embedded database in ${dataDir} is in use by process ${pid}; ` +
            'PGlite cannot be shared between processes: stop that process, use another DATA_DIR, or set DATABASE_URL'
        )
      }
      unlinkSync(lockPath) // stale lock of a dead process
    }
  }
  throw new Error(`could not lock ${dataDir}`)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
