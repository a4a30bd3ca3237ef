// The analysis cache stage: identical conversations (same normalized text, analyzer and
// prompt version) are analysed once. An LRU in memory answers hot keys without a query;
// the table behind it is shared by every instance and survives restarts.
import { LRUCache } from 'lru-cache'
import type { AnalysisCacheRepository, CacheEntry } from '../db/analysis-cache.ts'
import type { ClaimedConversation } from '../db/conversations.ts'
import type { WriteFragment } from '../db/write-fragment.ts'
import type { InsightFields } from '../domain.ts'

/** A batch split by what the cache knows: only `leaders` need the analyzer. */
export interface CachePlan {
  /** cache key of every conversation in the batch, by id */
  keyOf: Map<string, string>
  /** conversations whose text, analyzer and prompt already have an insight */
  hits: { row: ClaimedConversation; insight: InsightFields }[]
  /** the first conversation of each text the cache does not know: analysed */
  leaders: ClaimedConversation[]
  /** later conversations of the same batch with a leader's text: they share its insight */
  followers: ClaimedConversation[]
}

/**
 * The cache stage: one look-up for the batch, then identical texts within the batch are
 * analysed once (the first is the leader, the rest follow it).
 */
export async function planFromCache(
  cache: AnalysisCache,
  rows: readonly ClaimedConversation[],
  keyFor: (row: ClaimedConversation) => string
): Promise<CachePlan> {
  const keyOf = new Map(rows.map((r) => [r.id, keyFor(r)]))
  const found = await cache.lookup([...keyOf.values()])
  const plan: CachePlan = { keyOf, hits: [], leaders: [], followers: [] }
  const led = new Set<string>()
  for (const row of rows) {
    const key = keyOf.get(row.id)!
    const insight = found.get(key)
    if (insight) plan.hits.push({ row, insight })
    else if (led.has(key)) plan.followers.push(row)
    else {
      led.add(key)
      plan.leaders.push(row)
    }
  }
  return plan
}

export class AnalysisCache {
  private readonly lru: LRUCache<string, InsightFields> | null
  private pendingHits = new Map<string, number>()

  private readonly now: () => number

  constructor(
    private readonly repo: AnalysisCacheRepository,
    private readonly opts: {
      ttlSeconds: number
      lruSize: number
      /**
       * false: memory only, no table. For an analyzer cheaper than the look-up: the local one
       * analyses a conversation in ~0.2 ms, less than the table's read and write cost it
       * (both in the database and in this process), and the in-memory LRU still serves
       * repeated texts and identical ones in a batch.
       */
      persistent?: boolean
      /** ms since the epoch; injectable for tests */
      now?: () => number
    }
  ) {
    this.now = opts.now ?? Date.now
    this.lru =
      opts.lruSize > 0 && opts.ttlSeconds > 0
        ? new LRUCache({
            max: opts.lruSize,
            ttl: opts.ttlSeconds * 1000,
            perf: { now: this.now },
            // read the clock on every look-up: the cache is read once per batch, so lru-cache's
            // 1 ms debounce (a timer per read) buys nothing, and an injected clock stays exact
            ttlResolution: 0
          })
        : null
  }

  get enabled() {
    return this.opts.ttlSeconds > 0
  }

  async lookup(keys: string[]): Promise<Map<string, InsightFields>> {
    const found = new Map<string, InsightFields>()
    if (!this.enabled) return found
    const misses: string[] = []
    for (const k of new Set(keys)) {
      const v = this.lru?.get(k)
      if (v) found.set(k, v)
      else misses.push(k)
    }
    if (misses.length && this.opts.persistent !== false) {
      for (const [k, v] of await this.repo.getMany(misses)) {
        found.set(k, v.insight)
        // never keep an entry in memory past the row's own expiry
        const ttl = v.expiresAt.getTime() - this.now()
        if (ttl > 0) this.lru?.set(k, v.insight, { ttl })
      }
    }
    for (const k of keys) if (found.has(k)) this.pendingHits.set(k, (this.pendingHits.get(k) ?? 0) + 1)
    return found
  }

  /** The table write for `entries` as a fragment of the store statement; null when nothing goes to the table. */
  persistFragment(entries: CacheEntry[]): WriteFragment | null {
    if (!this.enabled || entries.length === 0 || this.opts.persistent === false) return null
    return this.repo.putFragment(entries, this.opts.ttlSeconds)
  }

  /** Keeps `entries` in memory (after the table write committed, or instead of one). */
  remember(entries: CacheEntry[]): void {
    if (!this.enabled) return
    for (const e of entries) this.lru?.set(e.key, e.insight)
  }

  /** Drops entries from memory (their rows were deleted: an erasure). */
  forget(keys: readonly string[]): void {
    for (const k of keys) this.lru?.delete(k)
  }

  async purgeExpired(): Promise<number> {
    return this.opts.persistent === false ? 0 : this.repo.purgeExpired()
  }

  /** Hit counts are written in the background sweep, not on the hot path. */
  async flushHits(): Promise<void> {
    if (this.pendingHits.size === 0) return
    const hits = this.pendingHits
    this.pendingHits = new Map()
    if (this.opts.persistent === false) return
    await this.repo.addHits(hits)
  }
}
