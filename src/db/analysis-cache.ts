// The analysis cache table: insights keyed by normalized text, analyzer and prompt version.
import { and, gt, inArray, sql } from 'drizzle-orm'
import type { InsightFields } from '../domain.ts'
import type { Database } from './client.ts'
import { analysisCache } from './schema.ts'

/** `now` (ms since the epoch) decides expiry on both sides: injectable so tests need not wait for a TTL. */
export function analysisCacheRepository(database: Database, now: () => number = Date.now) {
  const { db } = database
  return {
    async getMany(keys: string[]): Promise<Map<string, { insight: InsightFields; expiresAt: Date }>> {
      if (keys.length === 0) return new Map()
      const rows = await db
        .select({ key: analysisCache.key, insight: analysisCache.insight, expiresAt: analysisCache.expiresAt })
        .from(analysisCache)
        .where(and(inArray(analysisCache.key, keys), gt(analysisCache.expiresAt, new Date(now()))))
      return new Map(rows.map((r) => [r.key, { insight: r.insight as InsightFields, expiresAt: r.expiresAt }]))
    },

    async putMany(entries: { key: string; model: string; promptVersion: string; insight: InsightFields }[], ttlSeconds: number) {
      if (entries.length === 0) return
      const at = now()
      await db
        .insert(analysisCache)
        .values(entries.map((e) => ({ ...e, expiresAt: new Date(at + ttlSeconds * 1000) })))
        .onConflictDoUpdate({
          target: analysisCache.key,
          set: { insight: sql`excluded.insight`, expiresAt: sql`excluded.expires_at`, createdAt: sql`now()` }
        })
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
