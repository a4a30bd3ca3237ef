// The analysis cache table: insights keyed by normalized text, analyzer and prompt version.
import type { InsightFields } from '../domain.ts'
import type { Database } from './client.ts'
import { standalone, type WriteFragment } from './write-fragment.ts'

export interface CacheEntry {
  key: string
  model: string
  promptVersion: string
  insight: InsightFields
}

/** `now` (ms since the epoch) decides expiry on both sides: injectable so tests need not wait for a TTL. */
export function analysisCacheRepository(database: Database, now: () => number = Date.now) {
  return {
    // hand-written, like the other per-batch statements: drizzle's builder maps
    // every value on the worker's hot path
    async getMany(keys: string[]): Promise<Map<string, { insight: InsightFields; expiresAt: Date }>> {
      if (keys.length === 0) return new Map()
      // Expiry is checked here, not in SQL: with `expires_at > $2` in the prepared statement the
      // generic plan, made while the table was small, chose the expiry index and filtered every
      // live row by key (1.2 ms a batch at 2,000 rows, growing with the table: bench:drain). By
      // key alone the primary key is the only index that can answer; expired rows are rare
      // (the sweep purges them) and cost one comparison.
      // Unnamed, so planned at every call: a named statement's generic plan, made while the
      // cache was young, was a sequential scan that PostgreSQL kept as the table grew until
      // autovacuum's next ANALYZE (bench:drain: 0.7 ms a batch of 20, 13 ms at 20,000 rows).
      // Planning this one-table statement costs less than one such scan of a small table.
      const rows = await database.raw<{ key: string; insight: InsightFields; expires_at: Date | string }>(
        'SELECT key, insight, expires_at FROM analysis_cache WHERE key = ANY($1::text[])',
        [keys]
      )
      const t = now()
      const found = new Map<string, { insight: InsightFields; expiresAt: Date }>()
      for (const r of rows) {
        const expiresAt = r.expires_at instanceof Date ? r.expires_at : new Date(r.expires_at)
        if (expiresAt.getTime() > t) found.set(r.key, { insight: r.insight, expiresAt })
      }
      return found
    },

    /** The cache write as a fragment the store statement carries (one round trip a batch). */
    putFragment(entries: CacheEntry[], ttlSeconds: number): WriteFragment {
      // one row per key: ON CONFLICT DO UPDATE may not touch a row twice in one statement
      const unique = [...new Map(entries.map((e) => [e.key, e])).values()]
      return {
        name: 'cache',
        text: (p) =>
          `INSERT INTO analysis_cache (key, model, prompt_version, insight, expires_at)
           SELECT u.key, u.model, u.prompt_version, u.insight, ${p(2)}::timestamptz
           FROM jsonb_to_recordset(${p(1)}::jsonb) AS u(key text, model text, prompt_version text, insight jsonb)
           ON CONFLICT (key) DO UPDATE SET insight = excluded.insight, expires_at = excluded.expires_at, created_at = now()`,
        // one JSON document, as the store statement's rows: the insights are JSON already
        params: [
          JSON.stringify(unique.map((e) => ({ key: e.key, model: e.model, prompt_version: e.promptVersion, insight: e.insight }))),
          new Date(now() + ttlSeconds * 1000)
        ]
      }
    },

    async putMany(entries: CacheEntry[], ttlSeconds: number) {
      if (entries.length === 0) return
      const { text, params } = standalone(this.putFragment(entries, ttlSeconds))
      await database.raw(text, params, 'gleaner_cache_put')
    },

    async addHits(counts: Map<string, number>) {
      if (counts.size === 0) return
      // one statement for every key hit since the last flush
      await database.raw(
        `UPDATE analysis_cache c SET hits = c.hits + v.n FROM unnest($1::text[], $2::int[]) AS v(key, n) WHERE c.key = v.key`,
        [[...counts.keys()], [...counts.values()]],
        'gleaner_cache_hits'
      )
    },

    /** Deletes up to 10,000 expired rows a call: bounded work for a sweep tick. */
    async purgeExpired(): Promise<number> {
      const [r] = await database.raw<{ n: number }>(
        `WITH gone AS (DELETE FROM analysis_cache WHERE key IN (
           SELECT key FROM analysis_cache WHERE expires_at < now() LIMIT 10000) RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [],
        'gleaner_cache_purge'
      )
      return Number(r?.n ?? 0)
    }
  }
}

export type AnalysisCacheRepository = ReturnType<typeof analysisCacheRepository>
