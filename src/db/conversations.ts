// Conversations: ingest writes, worker claims (leases), dead letters, analyst reads.
import { and, eq, inArray, or, sql } from 'drizzle-orm'
import { v7 as uuidv7 } from 'uuid'
import type { Message } from '../analyzers/analyzer.ts'
import type { Database, Executor } from './client.ts'
import { type ConversationStatus, conversations } from './schema.ts'

export interface NewConversation {
  source: string
  externalId?: string | null
  messages: Message[]
  metadata?: Record<string, unknown> | null
  textHash: string
  status: 'pending' | 'skipped'
  skipReason?: string | null
}

export interface IngestResult {
  id: string
  status: ConversationStatus
  duplicate: boolean
  receivedAt: Date
}

/** A claimed conversation, as the worker's stages see it. */
export interface ClaimedConversation {
  id: string
  source: string
  messages: Message[]
  textHash: string
  receivedAt: Date
  attempts: number
}

interface ClaimedRow {
  id: string
  source: string
  messages: Message[]
  text_hash: string
  received_at: Date | string
  attempts: number
}

const toClaimed = (r: ClaimedRow): ClaimedConversation => ({
  id: r.id,
  source: r.source,
  messages: r.messages,
  textHash: r.text_hash,
  receivedAt: r.received_at instanceof Date ? r.received_at : new Date(r.received_at),
  attempts: Number(r.attempts)
})

export function conversationsRepository(database: Database) {
  const { db } = database

  return {
    /**
     * Inserts all rows in one multi-row statement. Idempotent on (source, external_id):
     * an existing conversation is reported as a duplicate with its current status, and a key
     * repeated inside one batch resolves to the first occurrence.
     */
    async insertMany(rows: NewConversation[], executor: Executor = db): Promise<IngestResult[]> {
      if (rows.length === 0) return []
      const now = new Date()
      const values = rows.map((r) => ({
        id: uuidv7(),
        source: r.source,
        externalId: r.externalId ?? null,
        messages: r.messages,
        metadata: r.metadata ?? null,
        textHash: r.textHash,
        status: r.status,
        skipReason: r.skipReason ?? null,
        receivedAt: now,
        updatedAt: now,
        availableAt: now
      }))
      const inserted = await executor
        .insert(conversations)
        .values(values)
        .onConflictDoNothing({ target: [conversations.source, conversations.externalId] })
        .returning({ id: conversations.id })
      const insertedIds = new Set(inserted.map((r) => r.id))
      const results: IngestResult[] = values.map((v) => ({
        id: v.id,
        status: v.status,
        duplicate: false,
        receivedAt: now
      }))
      if (insertedIds.size === values.length) return results

      const missing = values.filter((v) => !insertedIds.has(v.id) && v.externalId !== null)
      const existing = await executor
        .select({
          id: conversations.id,
          source: conversations.source,
          externalId: conversations.externalId,
          status: conversations.status,
          receivedAt: conversations.receivedAt
        })
        .from(conversations)
        .where(or(...missing.map((m) => and(eq(conversations.source, m.source), eq(conversations.externalId, m.externalId!)))))
      const byKey = new Map(existing.map((e) => [`${e.source}\u0000${e.externalId}`, e]))
      values.forEach((v, i) => {
        if (insertedIds.has(v.id)) return
        const hit = byKey.get(`${v.source}\u0000${v.externalId}`)
        if (!hit) throw new Error('conflicting row vanished during ingest') // deleted concurrently: let the client retry
        results[i] = { id: hit.id, status: hit.status, duplicate: true, receivedAt: hit.receivedAt }
      })
      return results
    },

    async getById(id: string) {
      const rows = await db.select().from(conversations).where(eq(conversations.id, id)).limit(1)
      return rows[0] ?? null
    },

    /**
     * Claims the given ids if they are still pending and free (ids taken by another worker or
     * instance are skipped, not waited for). Each claim counts as an attempt.
     */
    async claimByIds(ids: string[], owner: string, leaseSeconds: number): Promise<ClaimedConversation[]> {
      if (ids.length === 0) return []
      // Raw SQL: drizzle's builder cannot say FOR UPDATE SKIP LOCKED inside UPDATE … IN (…).
      const rows = await database.query<ClaimedRow>(sql`
        UPDATE conversations SET status = 'processing', lease_owner = ${owner},
          lease_expires_at = now() + make_interval(secs => ${leaseSeconds}),
          attempts = attempts + 1, updated_at = date_trunc('milliseconds', now())
        WHERE id IN (
          SELECT id FROM conversations
          WHERE ${inArray(conversations.id, ids)} AND status = 'pending' AND available_at <= now()
          FOR UPDATE SKIP LOCKED)
        RETURNING id, source, messages, text_hash, received_at, attempts`)
      return rows.map(toClaimed)
    },

    /** Claims up to n of the oldest claimable pending rows, skipping rows other workers hold. */
    async claimOldest(n: number, owner: string, leaseSeconds: number): Promise<ClaimedConversation[]> {
      if (n <= 0) return []
      const rows = await database.query<ClaimedRow>(sql`
        UPDATE conversations SET status = 'processing', lease_owner = ${owner},
          lease_expires_at = now() + make_interval(secs => ${leaseSeconds}),
          attempts = attempts + 1, updated_at = date_trunc('milliseconds', now())
        WHERE id IN (
          SELECT id FROM conversations
          WHERE status = 'pending' AND available_at <= now()
          ORDER BY received_at, id
          LIMIT ${n}
          FOR UPDATE SKIP LOCKED)
        RETURNING id, source, messages, text_hash, received_at, attempts`)
      return rows.map(toClaimed).sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime() || a.id.localeCompare(b.id))
    },

    async markSkipped(items: { id: string; reason: string }[], owner: string, executor: Executor = db) {
      for (const item of items) {
        await executor
          .update(conversations)
          .set({ status: 'skipped', skipReason: item.reason, leaseOwner: null, leaseExpiresAt: null, updatedAt: new Date() })
          .where(and(eq(conversations.id, item.id), eq(conversations.status, 'processing'), eq(conversations.leaseOwner, owner)))
      }
    },

    /**
     * A failed attempt: back to pending after a back-off, or failed (a dead letter) once the
     * attempts are used up. Only rows this owner still holds are touched: a lease that
     * expired and was taken by another instance is theirs now.
     */
    async releaseFailed(
      items: { id: string; error: string; delayMs: number; final: boolean }[],
      owner: string
    ): Promise<void> {
      for (const item of items) {
        await db
          .update(conversations)
          .set(
            item.final
              ? { status: 'failed', lastError: item.error.slice(0, 2000), leaseOwner: null, leaseExpiresAt: null, updatedAt: new Date() }
              : {
                  status: 'pending',
                  lastError: item.error.slice(0, 2000),
                  leaseOwner: null,
                  leaseExpiresAt: null,
                  updatedAt: new Date(),
                  availableAt: new Date(Date.now() + item.delayMs)
                }
          )
          .where(and(eq(conversations.id, item.id), eq(conversations.status, 'processing'), eq(conversations.leaseOwner, owner)))
      }
    },

    /**
     * Hands claims back without counting an attempt: used on shutdown and when the worker
     * pauses (open circuit, spent budget) with work already claimed.
     */
    async releaseClaims(ids: string[] | 'all', owner: string, delayMs = 0): Promise<number> {
      const rows = await database.query<{ id: string }>(sql`
        UPDATE conversations SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
          attempts = GREATEST(attempts - 1, 0), updated_at = date_trunc('milliseconds', now()),
          available_at = now() + make_interval(secs => ${delayMs / 1000})
        WHERE status = 'processing' AND lease_owner = ${owner}
          ${ids === 'all' ? sql`` : sql`AND ${inArray(conversations.id, ids.length ? ids : ['00000000-0000-0000-0000-000000000000'])}`}
        RETURNING id`)
      return rows.length
    },

    /**
     * Claims whose lease ran out belong to a crashed or wedged instance: back to pending, or
     * failed when the attempts are used up (a conversation that kills its worker every time
     * must not keep killing workers).
     */
    // updated_at is written at millisecond precision (date_trunc) because dead-letter
    // cursors are JS Dates: microseconds would make rows sharing an instant fall between pages
    async reclaimExpired(maxAttempts: number): Promise<{ requeued: number; failed: number }> {
      const rows = await database.query<{ status: string }>(sql`
        UPDATE conversations SET
          status = CASE WHEN attempts >= ${maxAttempts} THEN 'failed' ELSE 'pending' END,
          last_error = CASE WHEN attempts >= ${maxAttempts} THEN 'lease expired on the last attempt' ELSE last_error END,
          lease_owner = NULL, lease_expires_at = NULL, updated_at = date_trunc('milliseconds', now())
        WHERE id IN (
          SELECT id FROM conversations
          WHERE status = 'processing' AND lease_expires_at < now()
          LIMIT 1000
          FOR UPDATE SKIP LOCKED)
        RETURNING status`)
      const failed = rows.filter((r) => r.status === 'failed').length
      return { requeued: rows.length - failed, failed }
    },

    async backlogCounts(): Promise<Record<'pending' | 'processing' | 'failed', number>> {
      const rows = await database.query<{ status: string; n: number }>(sql`
        SELECT status, count(*)::int AS n FROM conversations
        WHERE status IN ('pending', 'processing', 'failed') GROUP BY status`)
      const out = { pending: 0, processing: 0, failed: 0 }
      for (const r of rows) out[r.status as keyof typeof out] = Number(r.n)
      return out
    },

    async listDeadLetters(limit: number, before?: { updatedAt: Date; id: string }) {
      return db
        .select({
          id: conversations.id,
          source: conversations.source,
          externalId: conversations.externalId,
          attempts: conversations.attempts,
          lastError: conversations.lastError,
          receivedAt: conversations.receivedAt,
          failedAt: conversations.updatedAt
        })
        .from(conversations)
        .where(
          and(
            eq(conversations.status, 'failed'),
            before
              ? sql`(${conversations.updatedAt}, ${conversations.id}) < (${before.updatedAt}, ${before.id})`
              : undefined
          )
        )
        .orderBy(sql`${conversations.updatedAt} DESC`, sql`${conversations.id} DESC`)
        .limit(limit)
    },

    /** Puts a dead letter back in the queue with fresh attempts. */
    async retryDeadLetter(id: string): Promise<boolean> {
      const rows = await db
        .update(conversations)
        .set({ status: 'pending', attempts: 0, availableAt: new Date(), updatedAt: new Date() })
        .where(and(eq(conversations.id, id), eq(conversations.status, 'failed')))
        .returning({ id: conversations.id })
      return rows.length === 1
    }
  }
}

export type ConversationsRepository = ReturnType<typeof conversationsRepository>
