// The migrate step: applies migrations/ (drizzle-kit SQL) at start-up, on either back end.
import { fileURLToPath } from 'node:url'
import type { PGlite } from '@electric-sql/pglite'
import type { Pool } from 'pg'
import type { Logger } from 'pino'

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url))
// Any constant works; it only has to be the same in every Gleaner instance.
const MIGRATION_LOCK_KEY = 727_001

/**
 * drizzle's migrator takes no lock: several instances starting together would race, so
 * the migration runs under a session advisory lock on one connection of the pool.
 */
export async function migratePostgres(pool: Pool, log: Logger): Promise<void> {
  const { drizzle } = await import('drizzle-orm/node-postgres')
  const { migrate } = await import('drizzle-orm/node-postgres/migrator')
  const client = await pool.connect()
  try {
    // a long wait here is another instance migrating: say so rather than look hung
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [MIGRATION_LOCK_KEY])
    if (!rows[0]?.locked) {
      log.info('start-up: another instance is migrating; waiting for its migration lock')
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    }
    try {
      await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
    }
  } finally {
    client.release()
  }
}

/** PGlite is one process's by its folder lock: no other migrator can run at the same time. */
export async function migratePglite(client: PGlite): Promise<void> {
  const { drizzle } = await import('drizzle-orm/pglite')
  const { migrate } = await import('drizzle-orm/pglite/migrator')
  await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS_FOLDER })
}
