// The database handle: the PGlite folder lock, migrations on open, and both back ends' basics.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t, { type Test } from 'tap'
import { type Database, openDatabase } from '../../src/db/client.ts'
import { lockDataDir } from '../../src/db/data-dir-lock.ts'
import { backendEnv, backends, freshPostgresUrl, tempDir, testConfig, waitFor } from '../helper.ts'

const logger = pino({ level: 'silent' })
const open = (env: Record<string, string>) => openDatabase(testConfig(env), logger)
const journal = JSON.parse(readFileSync(new URL('../../migrations/meta/_journal.json', import.meta.url), 'utf8')) as { entries: unknown[] }

/** A process that stays alive for the test; killed in teardown. */
async function liveProcess(t: Test): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)'], { stdio: 'ignore' })
  await once(child, 'spawn')
  t.teardown(() => {
    child.kill()
  })
  return child.pid!
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await once(child, 'exit')
  return child.pid!
}

async function tablesAndMigrations(database: Database) {
  // the tables the schema names: partitions (of conversations and insights) are theirs, not more tables
  const tables = await database.query<{ table_name: string }>(
    sql`SELECT c.relname AS table_name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`
  )
  const migrations = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`)
  return { tables: tables.map((r) => r.table_name), migrations: Number(migrations[0]!.n) }
}

const SCHEMA_TABLES = [
  'analysis_cache',
  'api_keys',
  'conversation_keys',
  'conversation_queue',
  'conversations',
  'erasures',
  'insight_rollups',
  'insight_rollups_narrow',
  'insight_topic_rollups',
  'insight_topic_totals',
  'insights',
  'key_usage',
  'model_usage'
]

t.test('lockDataDir', async (t) => {
  t.test('takes a free folder, creating it, and writes our pid', async (t) => {
    const dir = join(tempDir(t), 'nested', 'data')
    const release = lockDataDir(dir)
    t.equal(readFileSync(join(dir, 'gleaner.lock'), 'utf8'), String(process.pid))
    release()
    t.equal(existsSync(join(dir, 'gleaner.lock')), false, 'release removes the lock file')
    t.doesNotThrow(release, 'a second release is harmless')
  })

  t.test('refuses a folder locked by a live process, with a message saying what to do', async (t) => {
    const dir = tempDir(t)
    const pid = await liveProcess(t)
    writeFileSync(join(dir, 'gleaner.lock'), String(pid))
    t.throws(() => lockDataDir(dir), {
      message: new RegExp(`in use by process ${pid}.*another DATA_DIR.*DATABASE_URL`)
    })
    t.equal(readFileSync(join(dir, 'gleaner.lock'), 'utf8'), String(pid), 'the other process keeps its lock')
  })

  t.test('takes over a stale lock left by a dead process', async (t) => {
    const dir = tempDir(t)
    writeFileSync(join(dir, 'gleaner.lock'), String(await deadPid()))
    const release = lockDataDir(dir)
    t.equal(readFileSync(join(dir, 'gleaner.lock'), 'utf8'), String(process.pid))
    release()
  })

  t.test('takes over a lock file that holds no pid', async (t) => {
    for (const content of ['', 'garbage', '-5', '0']) {
      const dir = tempDir(t)
      writeFileSync(join(dir, 'gleaner.lock'), content)
      const release = lockDataDir(dir)
      t.equal(readFileSync(join(dir, 'gleaner.lock'), 'utf8'), String(process.pid), JSON.stringify(content))
      release()
    }
  })

  t.test('takes over a lock with our own pid (a container restarted with the same pid)', async (t) => {
    const dir = tempDir(t)
    writeFileSync(join(dir, 'gleaner.lock'), String(process.pid))
    const release = lockDataDir(dir)
    release()
    t.equal(existsSync(join(dir, 'gleaner.lock')), false)
  })
})

t.test('PGlite in a DATA_DIR', async (t) => {
  t.test('opening applies the migrations, holds the lock while open and releases it on close', async (t) => {
    const dir = tempDir(t)
    const database = await open({ DATA_DIR: dir })
    let closed = false
    t.teardown(() => (closed ? undefined : database.close()))
    t.equal(database.kind, 'pglite')
    t.same(await tablesAndMigrations(database), { tables: SCHEMA_TABLES, migrations: journal.entries.length })
    t.equal(readFileSync(join(dir, 'gleaner.lock'), 'utf8'), String(process.pid), 'locked while open')
    await database.ping()
    await database.close()
    closed = true
    t.equal(existsSync(join(dir, 'gleaner.lock')), false, 'unlocked after close')
  })

  t.test('the same folder opens again in the same process after close, with its data and no new migrations', async (t) => {
    const dir = tempDir(t)
    const first = await open({ DATA_DIR: dir })
    await first.query(sql`INSERT INTO model_usage (day, model, calls) VALUES ('2026-01-01', 'm', 3)`)
    await first.close()
    const second = await open({ DATA_DIR: dir })
    t.teardown(() => second.close())
    const rows = await second.query<{ calls: number }>(sql`SELECT calls FROM model_usage WHERE model = 'm'`)
    t.same(rows, [{ calls: 3 }], 'the data survived')
    t.same(await tablesAndMigrations(second), { tables: SCHEMA_TABLES, migrations: journal.entries.length })
  })

  t.test('opening a folder another live process holds fails before touching the database', async (t) => {
    const dir = tempDir(t)
    const pid = await liveProcess(t)
    writeFileSync(join(dir, 'gleaner.lock'), String(pid))
    await t.rejects(open({ DATA_DIR: dir }), { message: new RegExp(`in use by process ${pid}`) })
    t.equal(readFileSync(join(dir, 'gleaner.lock'), 'utf8'), String(pid))
    t.equal(existsSync(join(dir, 'PG_VERSION')), false, 'no database files were created')
  })

  t.test('an in-memory database takes no lock', async (t) => {
    const database = await open({ DATA_DIR: 'memory://' })
    t.teardown(() => database.close())
    t.same((await tablesAndMigrations(database)).tables, SCHEMA_TABLES)
  })
})

t.test('PostgreSQL', { skip: !process.env.DATABASE_URL && 'DATABASE_URL is not set' }, async (t) => {
  t.test('two instances opening a fresh database at the same time both succeed and migrate once', async (t) => {
    const url = await freshPostgresUrl(t)
    const results = await Promise.allSettled([open({ DATABASE_URL: url }), open({ DATABASE_URL: url }), open({ DATABASE_URL: url })])
    for (const r of results) if (r.status === 'fulfilled') t.teardown(() => r.value.close())
    t.same(
      results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok')),
      ['ok', 'ok', 'ok']
    )
    const first = (results[0] as PromiseFulfilledResult<Database>).value
    t.equal(first.kind, 'postgres')
    t.same(await tablesAndMigrations(first), { tables: SCHEMA_TABLES, migrations: journal.entries.length })
  })

  t.test('opening an already migrated database changes nothing', async (t) => {
    const url = await freshPostgresUrl(t)
    const a = await open({ DATABASE_URL: url })
    await a.close()
    const b = await open({ DATABASE_URL: url })
    t.teardown(() => b.close())
    t.equal((await tablesAndMigrations(b)).migrations, journal.entries.length)
  })

  t.test('a LISTEN connection is let go once, whether it dies, the database closes or the listener unlistens', async (t) => {
    const database = await open({ DATABASE_URL: await freshPostgresUrl(t) })
    let closed = false
    t.teardown(() => (closed ? undefined : database.close()))
    const got: string[] = []
    const unlisten = await database.listen('gleaner_drop', (p) => got.push(p))
    // the server ends the listening backend, as a restart or an idle-session killer would
    const killed = await database.query<{ n: number }>(
      sql`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN%gleaner_drop%' AND pid <> pg_backend_pid()`
    )
    t.equal(killed[0]?.n, 1, 'the listening backend was ended')
    await waitFor(
      async () => {
        await database.notify('gleaner_drop', 'back')
        return got.includes('back')
      },
      { what: 'the listener to reconnect', intervalMs: 200 }
    )
    await database.close()
    closed = true
    // close() let the connection go already; unlistening after it must not release it again
    await t.resolves(unlisten(), 'unlisten after close')
  })
})

for (const backend of backends()) {
  t.test(`${backend}: listen delivers notifications on its channel until unlistened`, async (t) => {
    const database = await open(await backendEnv(t, backend))
    t.teardown(() => database.close())
    const got: string[] = []
    const unlisten = await database.listen('gleaner_test', (p) => got.push(p))
    await database.notify('gleaner_test', 'one')
    await database.notify('other_channel', 'not for us')
    await database.query(sql`SELECT pg_notify('gleaner_test', 'two')`)
    await waitFor(() => got.length >= 2, { what: 'two notifications' })
    t.same(got, ['one', 'two'], 'from notify and from SQL alike')
    await unlisten()
    await database.notify('gleaner_test', 'three')
    await new Promise((r) => setTimeout(r, 100))
    t.same(got, ['one', 'two'], 'nothing after unlisten')
  })
}
