// API keys and their quotas. Only a sha256 of a key is stored; the key is shown once.
import { randomBytes } from 'node:crypto'
import { and, desc, eq, isNull, sql } from 'drizzle-orm'
import { v7 as uuidv7 } from 'uuid'
import type { Scope, Tier } from '../domain.ts'
import { sha256 } from '../pipeline/normalize.ts'
import type { Database } from './client.ts'
import { apiKeys, keyUsage } from './schema.ts'

export interface ApiKey {
  id: string
  name: string
  prefix: string
  scopes: Scope[]
  tier: Tier
  /** the idempotency scope of what it ingests (see schema.ts) */
  producer: string
}

export const KEY_PREFIX = 'gln_'
// 32 random bytes: far beyond guessing, and the prefix makes a leaked key easy to spot in scanners
export const generateKey = () => `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`
export const hashKey = sha256

/** "d:2026-11-26" and "m:2026-11": the UTC day and month a quota counts in. */
export function quotaPeriods(now = new Date()) {
  const iso = now.toISOString()
  const nextDay = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1))
  const nextMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1))
  return { day: `d:${iso.slice(0, 10)}`, month: `m:${iso.slice(0, 7)}`, dayResets: nextDay, monthResets: nextMonth }
}

export function apiKeysRepository(database: Database) {
  const { db } = database
  return {
    /**
     * A new key. Its producer is its own id unless one is given: a key made to replace
     * another (a rotation) names the old key's producer, so re-posts stay duplicates.
     */
    async create(input: { name: string; scopes: Scope[]; tier: Tier; producer?: string }): Promise<{ key: string; record: ApiKey; createdAt: Date }> {
      const key = generateKey()
      const id = uuidv7()
      const record = { id, name: input.name, prefix: key.slice(0, 12), scopes: input.scopes, tier: input.tier, producer: input.producer ?? id }
      const createdAt = new Date()
      await db.insert(apiKeys).values({ ...record, keyHash: hashKey(key), createdAt })
      return { key, record, createdAt }
    },

    /** Equality on the hash: the database never compares secrets, so timing tells nothing. */
    async findActiveByHash(hash: string): Promise<ApiKey | null> {
      const rows = await db
        .select({ id: apiKeys.id, name: apiKeys.name, prefix: apiKeys.prefix, scopes: apiKeys.scopes, tier: apiKeys.tier, producer: apiKeys.producer })
        .from(apiKeys)
        .where(and(eq(apiKeys.keyHash, hash), isNull(apiKeys.revokedAt)))
        .limit(1)
      const r = rows[0]
      return r ?? null
    },

    async list() {
      return db
        .select({
          id: apiKeys.id,
          name: apiKeys.name,
          prefix: apiKeys.prefix,
          scopes: apiKeys.scopes,
          tier: apiKeys.tier,
          producer: apiKeys.producer,
          createdAt: apiKeys.createdAt,
          revokedAt: apiKeys.revokedAt
        })
        .from(apiKeys)
        .orderBy(desc(apiKeys.createdAt))
    },

    async count(): Promise<number> {
      const rows = await db.select({ n: sql<number>`count(*)::int` }).from(apiKeys)
      return Number(rows[0]?.n ?? 0)
    },

    /** Revoke by id or by the key's visible prefix; returns how many keys were revoked. */
    async revoke(idOrPrefix: string): Promise<number> {
      const isId = /^[0-9a-f-]{36}$/i.test(idOrPrefix)
      const rows = await db
        .update(apiKeys)
        .set({ revokedAt: new Date() })
        .where(and(isId ? eq(apiKeys.id, idOrPrefix) : eq(apiKeys.prefix, idOrPrefix), isNull(apiKeys.revokedAt)))
        .returning({ id: apiKeys.id })
      return rows.length
    },

    /**
     * Takes n conversations from a key's daily and monthly quota, or none. Each upsert only
     * applies while the row stays within its limit (checked on the locked row, so concurrent
     * requests on any instance cannot overshoot); a month refusal gives the day back.
     */
    async consumeQuota(keyId: string, n: number, limits: { daily: number; monthly: number }, now = new Date()) {
      const p = quotaPeriods(now)
      const take = async (period: string, limit: number) => {
        if (n > limit) return false
        const rows = await database.query<{ c: number }>(sql`
          INSERT INTO key_usage (key_id, period, conversations) VALUES (${keyId}, ${period}, ${n})
          ON CONFLICT (key_id, period) DO UPDATE SET conversations = key_usage.conversations + excluded.conversations
          WHERE key_usage.conversations + excluded.conversations <= ${limit}
          RETURNING conversations AS c`)
        return rows.length === 1
      }
      if (!(await take(p.day, limits.daily))) return { ok: false as const, period: 'day' as const, resetsAt: p.dayResets }
      if (!(await take(p.month, limits.monthly))) {
        await this.refundQuota(keyId, n, now, 'day')
        return { ok: false as const, period: 'month' as const, resetsAt: p.monthResets }
      }
      return { ok: true as const }
    },

    async refundQuota(keyId: string, n: number, now = new Date(), only?: 'day') {
      const p = quotaPeriods(now)
      const periods = only === 'day' ? [p.day] : [p.day, p.month]
      for (const period of periods) {
        await db
          .update(keyUsage)
          .set({ conversations: sql`greatest(${keyUsage.conversations} - ${n}, 0)` })
          .where(and(eq(keyUsage.keyId, keyId), eq(keyUsage.period, period)))
      }
    },

    /** Each key's consumption in the current UTC day and month. */
    async usage(now = new Date()) {
      const p = quotaPeriods(now)
      return database.query<{ id: string; name: string; prefix: string; tier: Tier; day: number; month: number }>(sql`
        SELECT k.id, k.name, k.prefix, k.tier,
          coalesce(max(u.conversations) FILTER (WHERE u.period = ${p.day}), 0)::int AS day,
          coalesce(max(u.conversations) FILTER (WHERE u.period = ${p.month}), 0)::int AS month
        FROM api_keys k LEFT JOIN key_usage u ON u.key_id = k.id AND u.period IN (${p.day}, ${p.month})
        WHERE k.revoked_at IS NULL
        GROUP BY k.id, k.name, k.prefix, k.tier ORDER BY k.name`)
    }
  }
}

export type ApiKeysRepository = ReturnType<typeof apiKeysRepository>
