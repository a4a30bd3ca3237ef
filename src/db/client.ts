// One database handle for both back ends: PostgreSQL (postgres.ts) when DATABASE_URL is set,
// else PGlite, PostgreSQL compiled to WASM, in DATA_DIR (pglite.ts). Same schema, same
// queries; opening migrates (migrate.ts), and each step says in the log what start-up waits for.
import type { SQL } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import type { Logger } from 'pino'
import type { Config } from '../config.ts'
import { startupStep } from '../startup-progress.ts'
import type * as schema from './schema.ts'

/**
 * drizzle's database without its transaction(): on a pg pool it leaks the connection when
 * BEGIN fails (see postgres.ts). Transactions go through Database.transaction instead.
 */
export type Db = Omit<PgDatabase<PgQueryResultHKT, typeof schema>, 'transaction'>
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
  /** `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T>
  ping(): Promise<void>
  /** LISTEN on a channel; resolves to an unlisten function */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>
  notify(channel: string, payload: string): Promise<void>
  close(): Promise<void>
  /**
   * The same database for analytical reads (summary, lists, exports): on PostgreSQL a
   * separate, smaller pool with its own statement timeout, so no read can take the
   * connections ingest and the worker need; PGlite has one connection, so itself.
   */
  analytics?: Database
}

/** A back end opened but not yet migrated. */
export interface OpenedBackend {
  database: Database
  /** where it is, for the start-up log (never a password) */
  describe: string
  migrate(log: Logger): Promise<void>
}

export async function openDatabase(config: Config, logger: Logger): Promise<Database> {
  const log = logger.child({ module: 'database' })
  const opened = config.DATABASE_URL
    ? await startupStep(log, 'connecting to PostgreSQL', async () => (await import('./postgres.ts')).openPostgres(config, logger))
    : await startupStep(log, `opening the embedded database (PGlite) in ${config.DATA_DIR}`, async () =>
        (await import('./pglite.ts')).openPglite(config)
      )
  return migrated(opened, logger)
}

/** Applies the migrations to an opened back end; closes it if they fail. */
export async function migrated(opened: OpenedBackend, logger: Logger): Promise<Database> {
  const log = logger.child({ module: 'database' })
  try {
    await startupStep(log, 'applying migrations', () => opened.migrate(log))
  } catch (err) {
    await opened.database.close().catch(() => {})
    throw err
  }
  log.info({ database: opened.describe }, 'database ready')
  return opened.database
}
