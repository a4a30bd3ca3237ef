// Databases the bench runs against: a fresh PostgreSQL database per row when DATABASE_URL is
// set (it is then the admin URL), else a fresh PGlite folder. Always dropped afterwards.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import pino from 'pino'
import { loadConfig } from '../../src/config.ts'
import { type Database, openDatabase } from '../../src/db/client.ts'

export const PG_ADMIN = process.env.DATABASE_URL
const silent = pino({ level: 'silent' })

export interface Target {
  /** env for a server process */
  env: Record<string, string>
  /** open the same database in this process (PGlite: only while no server holds it) */
  open(): Promise<Database>
  drop(): Promise<void>
}

async function adminQuery(text: string) {
  const admin = new pg.Client({ connectionString: PG_ADMIN })
  await admin.connect()
  try {
    await admin.query(text)
  } finally {
    await admin.end()
  }
}

async function freshTarget(label: string): Promise<Target> {
  if (PG_ADMIN) {
    const name = `gleaner_bench_${label}_${process.pid}`
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await adminQuery(`CREATE DATABASE ${name}`)
    const url = new URL(PG_ADMIN)
    url.pathname = `/${name}`
    return {
      env: { DATABASE_URL: url.toString() },
      open: () => openDatabase(loadConfig({ DATABASE_URL: url.toString() }), silent),
      drop: () => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    }
  }
  const dir = mkdtempSync(join(tmpdir(), `gleaner-bench-${label}-`))
  return {
    env: { DATA_DIR: dir },
    open: () => openDatabase(loadConfig({ DATA_DIR: dir }), silent),
    async drop() {
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** Runs `fn` on a fresh database and drops it afterwards, whatever `fn` does. */
export async function withTarget<T>(label: string, fn: (target: Target) => Promise<T>): Promise<T> {
  const target = await freshTarget(label)
  try {
    return await fn(target)
  } finally {
    await target.drop()
  }
}

/** Runs `fn` with the target's database open in this process, closing it afterwards. */
export async function withDatabase<T>(target: Target, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await target.open()
  try {
    return await fn(db)
  } finally {
    await db.close()
  }
}
