// Monthly partitions of conversations and insights (migration 0004): made ahead of time, and
// dropped whole once older than RETENTION_DAYS, with the idempotency keys and queue rows of
// what they held; rollups are kept for ROLLUP_RETENTION_DAYS and trimmed a day at a time.
// Our own small step rather than pg_partman: that extension is not in PGlite or in most
// managed PostgreSQL offerings' default set, and two tables with one monthly rule need a
// hundred lines, not a scheduler.
import { sql } from 'drizzle-orm'
import type { Database, Executor } from './client.ts'

/** The partitioned tables; an insight's key is its conversation's id, so both split alike. */
export const PARTITIONED_TABLES = ['conversations', 'insights'] as const
export type PartitionedTable = (typeof PARTITIONED_TABLES)[number]

/** Any constant works; it only has to be the same in every Gleaner instance. */
const MAINTENANCE_LOCK_KEY = 727_002
/**
 * DDL on a partition takes a lock on its parent that queues every query behind it; a
 * maintenance step that cannot get it this quickly gives up and tries at the next run.
 */
const LOCK_TIMEOUT = '3s'
/** Rows deleted per statement when trimming keys, queue rows and rollups: bounded work and WAL. */
const DELETE_CHUNK = 10_000

/** The first UUIDv7 of a millisecond (version and variant bits zero): a partition bound. */
export function uuidAt(ms: number): string {
  const hex = Math.floor(ms).toString(16).padStart(12, '0')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`
}

/** The millisecond a UUIDv7 (or a bound) was made at. */
export const msOfUuid = (uuid: string) => Number.parseInt(uuid.slice(0, 8) + uuid.slice(9, 13), 16)

/** Midnight UTC of the first of `ms`'s month, plus `add` months. */
export function monthStart(ms: number, add = 0): number {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + add, 1)
}

const partitionName = (table: PartitionedTable, fromMs: number) => {
  const d = new Date(fromMs)
  return `${table}_p${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, '0')}`
}

export interface Partition {
  table: PartitionedTable
  name: string
  /** lower bound (a UUIDv7 bound), null for the first partition, which starts at MINVALUE */
  from: string | null
  to: string
}

// pg_get_expr spells a range partition's bound as FOR VALUES FROM (MINVALUE | '<uuid>') TO ('<uuid>')
const BOUND_RE = /FROM \((?:MINVALUE|'([0-9a-f-]{36})')\) TO \('([0-9a-f-]{36})'\)/

export function partitionsRepository(database: Database) {
  async function list(executor?: Executor): Promise<Partition[]> {
    const rows = await database.query<{ parent: PartitionedTable; name: string; bound: string }>(
      sql`SELECT p.relname AS parent, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent IN ('conversations'::regclass, 'insights'::regclass)
          ORDER BY 1, 2`,
      executor
    )
    return rows.flatMap((r) => {
      const m = BOUND_RE.exec(r.bound)
      return m ? [{ table: r.parent, name: r.name, from: m[1] ?? null, to: m[2]! }] : []
    })
  }

  /**
   * One maintenance step under a lock only one instance gets at a time (the others skip:
   * the holder does the work); false when another instance holds it.
   */
  async function exclusive<T>(fn: (tx: Executor) => Promise<T>): Promise<{ ran: false } | { ran: true; value: T }> {
    return database.transaction(async (tx) => {
      await database.query(sql.raw(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`), tx)
      const [got] = await database.query<{ locked: boolean }>(sql`SELECT pg_try_advisory_xact_lock(${MAINTENANCE_LOCK_KEY}) AS locked`, tx)
      if (!got?.locked) return { ran: false as const }
      return { ran: true as const, value: await fn(tx) }
    })
  }

  async function deleteInChunks(statement: ReturnType<typeof sql>): Promise<number> {
    let total = 0
    for (;;) {
      const [r] = await database.query<{ n: number }>(statement)
      const n = Number(r?.n ?? 0)
      total += n
      if (n < DELETE_CHUNK) return total
    }
  }

  return {
    list,

    /**
     * Partitions for every month from the newest existing bound up to `monthsAhead` months
     * after `now`'s, for both tables. Returns the names created.
     */
    async ensureAhead(now: number, monthsAhead: number): Promise<string[]> {
      const result = await exclusive(async (tx) => {
        const created: string[] = []
        const parts = await list(tx)
        const until = monthStart(now, monthsAhead + 1)
        for (const table of PARTITIONED_TABLES) {
          const ends = parts.filter((p) => p.table === table).map((p) => msOfUuid(p.to))
          // no partition at all cannot happen after migration 0004; start at this month then
          let from = ends.length ? Math.max(...ends) : monthStart(now)
          while (from < until) {
            const to = monthStart(from, 1)
            const name = partitionName(table, from)
            await database.query(
              sql.raw(`CREATE TABLE IF NOT EXISTS "${name}" PARTITION OF "${table}" FOR VALUES FROM ('${uuidAt(from)}') TO ('${uuidAt(to)}')`),
              tx
            )
            created.push(name)
            from = to
          }
        }
        return created
      })
      return result.ran ? result.value : []
    },

    /**
     * Drops every partition that holds only conversations received before `cutoff` (its upper
     * bound is at or before it), insights first, then removes the idempotency keys and queue
     * rows of the conversations that went. Returns the partitions dropped.
     */
    async dropBefore(cutoff: number): Promise<{ dropped: string[]; keys: number; queued: number }> {
      const result = await exclusive(async (tx) => {
        const old = (await list(tx)).filter((p) => p.to <= uuidAt(cutoff))
        // insights before conversations: never a moment with an insight whose conversation is gone
        old.sort((a, b) => (a.table === b.table ? a.to.localeCompare(b.to) : a.table === 'insights' ? -1 : 1))
        for (const p of old) await database.query(sql.raw(`DROP TABLE "${p.name}"`), tx)
        return old
      })
      if (!result.ran || result.value.length === 0) return { dropped: [], keys: 0, queued: 0 }
      // what went is every id below the highest bound dropped (partitions are contiguous from the first)
      const bound = result.value.map((p) => p.to).sort().at(-1)!
      const keys = await deleteInChunks(sql`WITH gone AS (
          DELETE FROM conversation_keys WHERE ctid IN (
            SELECT ctid FROM conversation_keys WHERE conversation_id < ${bound}::uuid LIMIT ${DELETE_CHUNK})
          RETURNING 1) SELECT count(*)::int AS n FROM gone`)
      const queued = await deleteInChunks(sql`WITH gone AS (
          DELETE FROM conversation_queue WHERE conversation_id IN (
            SELECT conversation_id FROM conversation_queue WHERE conversation_id < ${bound}::uuid LIMIT ${DELETE_CHUNK})
          RETURNING 1) SELECT count(*)::int AS n FROM gone`)
      return { dropped: result.value.map((p) => p.name), keys, queued }
    },

    /** Deletes rollup rows of days before `cutoffDay` (YYYY-MM-DD), in bounded statements. */
    async trimRollups(cutoffDay: string): Promise<number> {
      let total = 0
      for (const table of ['insight_rollups', 'insight_rollups_narrow', 'insight_topic_rollups', 'insight_topic_totals']) {
        total += await deleteInChunks(sql.raw(`WITH gone AS (
            DELETE FROM ${table} WHERE ctid IN (SELECT ctid FROM ${table} WHERE day < '${cutoffDay}'::date LIMIT ${DELETE_CHUNK})
            RETURNING 1) SELECT count(*)::int AS n FROM gone`))
      }
      return total
    }
  }
}

export type PartitionsRepository = ReturnType<typeof partitionsRepository>
