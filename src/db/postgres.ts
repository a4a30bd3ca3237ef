// The PostgreSQL back end: a pg Pool behind drizzle, LISTEN on dedicated connections that
// come back after a database restart, and transactions that never leak a connection.
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import type { Database, Db, Executor, OpenedBackend } from './client.ts'
import { isDatabaseUnavailable } from './errors.ts'
import { migratePostgres } from './migrate.ts'
import * as schema from './schema.ts'

/** Fail fast while the database is down, so ingest answers 503 instead of hanging. */
const CONNECT_TIMEOUT_MS = 5_000
/** Idle connections are closed after this: a quiet instance gives its slots back to the server. */
const IDLE_TIMEOUT_MS = 30_000
/** A LISTEN connection that dropped (a database restart) is opened again after this pause. */
const LISTEN_RETRY_MS = 1_000
/**
 * Session settings sent when each connection starts. jit off: PostgreSQL compiles a plan
 * whose estimated cost passes jit_above_cost with LLVM, and for Gleaner's statements the
 * compilation is the statement: a summary's partial-day count at 20,000,000 insights took
 * 117 ms, 93 of them JIT (37 ms without). None of our statements runs long enough to win
 * the compile back.
 */
const SESSION_OPTIONS = '-c jit=off'

export async function openPostgres(config: Config, logger: Logger): Promise<OpenedBackend> {
  const { default: pg } = await import('pg')
  const { drizzle } = await import('drizzle-orm/node-postgres')
  const pool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: config.DB_POOL_MAX,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: config.DB_STATEMENT_TIMEOUT_MS || undefined,
    options: SESSION_OPTIONS,
    idleTimeoutMillis: IDLE_TIMEOUT_MS,
    application_name: `gleaner:${config.INSTANCE_ID}`.slice(0, 63)
  })
  // analytical reads get their own pool: however many summaries and exports run, ingest and
  // the worker keep all DB_POOL_MAX connections
  const readPool = new pg.Pool({
    connectionString: config.DATABASE_URL,
    max: config.DB_READ_POOL_MAX,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: config.DB_READ_STATEMENT_TIMEOUT_MS || undefined,
    options: SESSION_OPTIONS,
    idleTimeoutMillis: IDLE_TIMEOUT_MS,
    application_name: `gleaner-reads:${config.INSTANCE_ID}`.slice(0, 63)
  })
  for (const p of [pool, readPool]) {
    // An idle client losing its server emits 'error' on the pool; unhandled, it kills the process.
    p.on('error', (err) => logger.warn({ err: { message: err.message } }, 'idle database connection lost'))
    // A checked-out client has no pool listener: a transaction holds one between statements,
    // and a server shutdown then emits 'error' on it, which, unhandled, kills the process.
    // The statement that follows fails on its own (503), so nothing to do here.
    p.on('connect', (client) => client.on('error', () => {}))
  }
  const db = drizzle({ client: pool, schema }) as unknown as Db
  const readDb = drizzle({ client: readPool, schema }) as unknown as Db

  // drizzle's transaction() on a pool checks a client out and sends BEGIN before its
  // try/finally, so a BEGIN that fails (a pooled connection the server has just cut) never
  // gives its client back: each outage leaks connections until the pool is dry, and
  // pool.end() then waits for ever. So the client is checked out here, and drizzle runs the
  // transaction on that one client (it then neither connects nor releases): whatever fails,
  // the client goes back, and one that failed as unavailable is destroyed rather than
  // handed to the next caller. One drizzle instance per pooled client: the pool reuses them.
  type ClientDb = { transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> }
  const onClient = new WeakMap<import('pg').PoolClient, ClientDb>()
  const clientDb = (client: import('pg').PoolClient) => {
    let d = onClient.get(client)
    if (!d) {
      d = drizzle({ client }) as unknown as ClientDb
      onClient.set(client, d)
    }
    return d
  }

  const listeners: import('pg').PoolClient[] = []
  /** Lets a LISTEN connection go (destroyed, not reused: it holds a LISTEN); false if it already was. */
  const dropListener = (c: import('pg').PoolClient): boolean => {
    const i = listeners.indexOf(c)
    if (i < 0) return false
    listeners.splice(i, 1)
    c.release(true)
    return true
  }
  const database: Database = {
    db,
    kind: 'postgres',
    async query<T>(statement: Parameters<Database['query']>[0], executor: Executor = db) {
      const res = (await executor.execute(statement)) as unknown as { rows: T[] }
      return res.rows
    },
    async raw<T>(text: string, values: unknown[], name?: string) {
      const res = await pool.query({ text, values, name })
      return res.rows as T[]
    },
    async transaction(fn) {
      const client = await pool.connect()
      let broken: Error | undefined
      try {
        return await clientDb(client).transaction(fn)
      } catch (err) {
        if (isDatabaseUnavailable(err)) broken = err as Error
        throw err
      } finally {
        client.release(broken)
      }
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
          let c: import('pg').PoolClient | undefined
          try {
            c = await pool.connect()
            const client = c
            current = client
            listeners.push(client)
            client.on('notification', (msg) => {
              if (msg.channel === channel && msg.payload) onPayload(msg.payload)
            })
            client.on('error', (err) => {
              // a connection can emit more than one error, and close() may have let it go
              // already: dropListener releases at most once
              if (!dropListener(client)) return
              if (current === client) current = undefined
              if (closed) return
              logger.warn({ err: { message: err.message }, channel }, 'listen connection lost; reconnecting')
              setTimeout(() => void connect(), LISTEN_RETRY_MS).unref()
            })
            await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
            return
          } catch (err) {
            if (c) {
              dropListener(c)
              if (current === c) current = undefined
            }
            if (closed) return
            logger.warn({ err: { message: (err as Error).message }, channel }, 'cannot listen yet; retrying')
            await new Promise((r) => setTimeout(r, LISTEN_RETRY_MS).unref())
          }
        }
      }
      await connect()
      return async () => {
        closed = true
        const c = current
        current = undefined
        if (!c || !listeners.includes(c)) return
        try {
          await c.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`)
        } catch {}
        dropListener(c)
      }
    },
    async notify(channel, payload) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload])
    },
    async close() {
      for (const c of [...listeners]) dropListener(c)
      await Promise.all([pool.end(), readPool.end()])
    }
  }
  database.analytics = {
    ...database,
    db: readDb,
    async query<T>(statement: Parameters<Database['query']>[0], executor: Executor = readDb) {
      const res = (await executor.execute(statement)) as unknown as { rows: T[] }
      return res.rows
    },
    async raw<T>(text: string, values: unknown[], name?: string) {
      const res = await readPool.query({ text, values, name })
      return res.rows as T[]
    },
    analytics: undefined
  }
  const url = new URL(config.DATABASE_URL!)
  return { database, describe: `postgresql://${url.host}${url.pathname}`, migrate: (log) => migratePostgres(pool, log) }
}
