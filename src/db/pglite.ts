// The embedded back end: PGlite (PostgreSQL compiled to WASM) in DATA_DIR, one process at a
// time (data-dir-lock.ts), or in memory for tests ("memory://").
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import v8 from 'node:v8'
import type { PGlite } from '@electric-sql/pglite'
import type { Config } from '../config.ts'
import type { Database, Db, Executor, OpenedBackend } from './client.ts'
import { lockDataDir } from './data-dir-lock.ts'
import { migratePglite } from './migrate.ts'
import * as schema from './schema.ts'

export async function openPglite(config: Config): Promise<OpenedBackend> {
  // Before PGlite compiles its WebAssembly (PostgreSQL, ~9 MB of it): V8's optimizing tier
  // keeps a second, TurboFan copy of hot code beside Liftoff's, ~45 MB of resident memory in
  // a process whose goal is 300 MB. The flag is V8's (no API chooses a tier per module); it
  // applies to WebAssembly compiled from here on, in this process only.
  if (config.PGLITE_WASM_TIERING === 'baseline') v8.setFlagsFromString('--liftoff-only')
  const { PGlite } = await import('@electric-sql/pglite')
  const inMemory = config.DATA_DIR.startsWith('memory://')
  const dataDir = inMemory ? config.DATA_DIR : resolve(config.DATA_DIR)
  // the lock comes first: a folder another process holds is not even opened
  const releaseLock = inMemory ? () => {} : lockDataDir(dataDir)
  const options = { startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${config.PGLITE_SHARED_BUFFERS}`] }
  let client: PGlite
  try {
    const fresh = !inMemory && !existsSync(join(dataDir, 'PG_VERSION'))
    client = await PGlite.create(dataDir, options)
    if (fresh) {
      // A new folder is made by initdb, whose memory (~450 MB of WebAssembly heap) this
      // process would keep for its whole life; closed and opened again, it is given back.
      await client.close()
      client = await PGlite.create(dataDir, options)
    }
  } catch (err) {
    releaseLock()
    throw err
  }
  return pgliteBackend(client, inMemory ? dataDir : `pglite:${dataDir}`, releaseLock)
}

/**
 * The Database over an already created PGlite. openPglite uses it; so do the tests, which
 * create their in-memory databases from one migrated image instead of running initdb
 * (seconds on a busy machine) for every app they build.
 */
export async function pgliteBackend(client: PGlite, describe: string, releaseLock: () => void = () => {}): Promise<OpenedBackend> {
  const { drizzle } = await import('drizzle-orm/pglite')
  // PGlite runs one statement at a time, so drizzle's own transaction is safe here: there
  // is no pool to leak from.
  const drizzleDb = drizzle({ client, schema })
  const db = drizzleDb as unknown as Db
  const database: Database = {
    db,
    kind: 'pglite',
    async query<T>(statement: Parameters<Database['query']>[0], executor: Executor = db) {
      const res = (await executor.execute(statement)) as unknown as { rows: T[] }
      return res.rows
    },
    async raw<T>(text: string, values: unknown[]) {
      const res = await client.query(text, values)
      return res.rows as T[]
    },
    transaction: (fn) => drizzleDb.transaction((tx) => fn(tx as unknown as Executor)),
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
  return { database, describe, migrate: () => migratePglite(client) }
}
