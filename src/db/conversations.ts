// Conversations: ingest writes, worker claims (leases), dead letters, analyst reads.
import { and, eq, inArray, type SQL, sql } from 'drizzle-orm'
import { v7 as uuidv7 } from 'uuid'
import { BACKLOG_STATUSES, type BacklogStatus, type ConversationStatus, type IngestStatus, type Message } from '../domain.ts'
import type { Database } from './client.ts'
import { conversations, statusLiteral } from './schema.ts'

// statuses spelled into hand-written SQL (typed: see statusLiteral)
const PENDING = statusLiteral('pending')
const PROCESSING = statusLiteral('processing')
const FAILED = statusLiteral('failed')

export interface NewConversation {
  source: string
  externalId?: string | null
  messages: Message[]
  metadata?: Record<string, unknown> | null
  textHash: string
  status: IngestStatus
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

const INSERT_CONVERSATIONS = `
  INSERT INTO conversations (id, source, external_id, messages, metadata, status, skip_reason, text_hash, received_at, updated_at, available_at)
  SELECT u.id, u.source, u.external_id, u.messages::jsonb, u.metadata::jsonb, u.status, u.skip_reason, u.text_hash, $9, $9, $9
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
    AS u(id, source, external_id, messages, metadata, status, skip_reason, text_hash)
  ON CONFLICT (source, external_id) DO NOTHING
  RETURNING id`

const SELECT_BY_KEYS = `
  SELECT c.id, c.source, c.external_id, c.status, c.received_at
  FROM conversations c JOIN unnest($1::text[], $2::text[]) AS k(source, external_id)
    ON c.source = k.source AND c.external_id = k.external_id`

/** The backlog counts, one scalar count per status (see backlogCounts). */
export const BACKLOG_COUNTS = sql`SELECT ${sql.join(
  BACKLOG_STATUSES.map((s) => sql`(SELECT count(*) FROM conversations WHERE status = ${sql.raw(statusLiteral(s))})::int AS ${sql.identifier(s)}`),
  sql`, `
)}`

export const idempotencyKey = (source: string, externalId: string | null | undefined) => `${source}\u0000${externalId}`

export function conversationsRepository(database: Database) {
  const { db } = database

  /**
   * One statement: lock the selected rows (skipping rows other workers hold), mark them
   * processing under this owner's lease, count the attempt, return what the stages need.
   * Raw SQL: drizzle's builder cannot say FOR UPDATE SKIP LOCKED inside UPDATE … IN (…).
   */
  async function claim(owner: string, leaseSeconds: number, selector: SQL): Promise<ClaimedConversation[]> {
    const rows = await database.query<ClaimedRow>(sql`
      UPDATE conversations SET status = ${sql.raw(PROCESSING)}, lease_owner = ${owner},
        lease_expires_at = now() + make_interval(secs => ${leaseSeconds}),
        attempts = attempts + 1, updated_at = date_trunc('milliseconds', now())
      WHERE id IN (SELECT id FROM conversations WHERE ${selector} FOR UPDATE SKIP LOCKED)
      RETURNING id, source, messages, text_hash, received_at, attempts`)
    return rows.map(toClaimed)
  }

  return {
    /**
     * Inserts all rows in one multi-row statement. Idempotent on (source, external_id):
     * an existing conversation is reported as a duplicate with its current status, and a key
     * repeated inside one batch resolves to the first occurrence.
     */
    async insertMany(rows: NewConversation[]): Promise<IngestResult[]> {
      if (rows.length === 0) return []
      const now = new Date()
      const ids = rows.map(() => uuidv7())
      // Hand-written rather than drizzle's insert(): on the ingest hot path the builder's
      // per-value mapping was the largest cost after the database itself. unnest() keeps
      // the statement text fixed whatever the row count, so it is prepared once.
      const inserted = await database.raw<{ id: string }>(
        INSERT_CONVERSATIONS,
        [
          ids,
          rows.map((r) => r.source),
          rows.map((r) => r.externalId ?? null),
          rows.map((r) => JSON.stringify(r.messages)),
          rows.map((r) => (r.metadata == null ? null : JSON.stringify(r.metadata))),
          rows.map((r) => r.status),
          rows.map((r) => r.skipReason ?? null),
          rows.map((r) => r.textHash),
          now
        ],
        'gleaner_insert_conversations'
      )
      const results: IngestResult[] = rows.map((r, i) => ({ id: ids[i]!, status: r.status, duplicate: false, receivedAt: now }))
      if (inserted.length === rows.length) return results

      // Conflicts: report the existing conversation (one query for all of them). A key
      // repeated inside one statement resolves to its first occurrence.
      const insertedIds = new Set(inserted.map((r) => r.id))
      const missing = rows.map((r, i) => ({ r, i })).filter(({ i }) => !insertedIds.has(ids[i]!))
      const existing = await database.raw<{ id: string; source: string; external_id: string; status: ConversationStatus; received_at: Date | string }>(
        SELECT_BY_KEYS,
        [missing.map(({ r }) => r.source), missing.map(({ r }) => r.externalId ?? null)],
        'gleaner_select_conversations_by_keys'
      )
      const byKey = new Map(existing.map((e) => [`${e.source}\u0000${e.external_id}`, e]))
      for (const { r, i } of missing) {
        const hit = byKey.get(`${r.source}\u0000${r.externalId}`)
        if (!hit) throw new Error('conflicting row vanished during ingest') // deleted concurrently: let the client retry
        results[i] = { id: hit.id, status: hit.status, duplicate: true, receivedAt: new Date(hit.received_at) }
      }
      return results
    },

    /** The stored conversations with these idempotency keys (rows without an external_id have none). */
    async findByKeys(rows: Pick<NewConversation, 'source' | 'externalId'>[]): Promise<Map<string, { id: string; status: ConversationStatus }>> {
      const keyed = rows.filter((r) => r.externalId != null)
      if (keyed.length === 0) return new Map()
      const found = await database.raw<{ id: string; source: string; external_id: string; status: ConversationStatus }>(
        SELECT_BY_KEYS,
        [keyed.map((r) => r.source), keyed.map((r) => r.externalId)],
        'gleaner_select_conversations_by_keys'
      )
      return new Map(found.map((e) => [idempotencyKey(e.source, e.external_id), { id: e.id, status: e.status }]))
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
      return claim(owner, leaseSeconds, sql`${inArray(conversations.id, ids)} AND status = ${sql.raw(PENDING)} AND available_at <= now()`)
    },

    /** Claims up to n of the oldest claimable pending rows, skipping rows other workers hold. */
    async claimOldest(n: number, owner: string, leaseSeconds: number): Promise<ClaimedConversation[]> {
      if (n <= 0) return []
      const rows = await claim(owner, leaseSeconds, sql`status = ${sql.raw(PENDING)} AND available_at <= now() ORDER BY received_at, id LIMIT ${n}`)
      return rows.sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime() || a.id.localeCompare(b.id))
    },

    /**
     * A failed attempt: back to pending after a back-off, or failed (a dead letter) once the
     * attempts are used up. Only rows this owner still holds are touched: a lease that
     * expired and was taken by another instance is theirs now.
     */
    async releaseFailed(items: { id: string; error: string; delayMs: number; final: boolean }[], owner: string): Promise<void> {
      if (items.length === 0) return
      await database.raw(
        `UPDATE conversations c SET
           status = CASE WHEN v.final THEN ${FAILED} ELSE ${PENDING} END,
           last_error = v.error, lease_owner = NULL, lease_expires_at = NULL,
           updated_at = date_trunc('milliseconds', now()),
           available_at = CASE WHEN v.final THEN c.available_at ELSE now() + make_interval(secs => v.delay_ms / 1000.0) END
         FROM unnest($1::uuid[], $2::text[], $3::float8[], $4::bool[]) AS v(id, error, delay_ms, final)
         WHERE c.id = v.id AND c.status = ${PROCESSING} AND c.lease_owner = $5`,
        [items.map((i) => i.id), items.map((i) => i.error.slice(0, 2000)), items.map((i) => i.delayMs), items.map((i) => i.final), owner],
        'gleaner_release_failed'
      )
    },

    /**
     * Hands claims back without counting an attempt: used on shutdown and when the worker
     * pauses (open circuit, spent budget) with work already claimed.
     */
    async releaseClaims(ids: string[] | 'all', owner: string, delayMs = 0): Promise<number> {
      if (ids !== 'all' && ids.length === 0) return 0
      const rows = await database.query<{ id: string }>(sql`
        UPDATE conversations SET status = ${sql.raw(PENDING)}, lease_owner = NULL, lease_expires_at = NULL,
          attempts = GREATEST(attempts - 1, 0), updated_at = date_trunc('milliseconds', now()),
          available_at = now() + make_interval(secs => ${delayMs / 1000})
        WHERE status = ${sql.raw(PROCESSING)} AND lease_owner = ${owner}
          ${ids === 'all' ? sql`` : sql`AND ${inArray(conversations.id, ids)}`}
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
      const rows = await database.query<{ status: ConversationStatus }>(sql`
        UPDATE conversations SET
          status = CASE WHEN attempts >= ${maxAttempts} THEN ${sql.raw(FAILED)} ELSE ${sql.raw(PENDING)} END,
          last_error = CASE WHEN attempts >= ${maxAttempts} THEN 'lease expired on the last attempt' ELSE last_error END,
          lease_owner = NULL, lease_expires_at = NULL, updated_at = date_trunc('milliseconds', now())
        WHERE id IN (
          SELECT id FROM conversations
          WHERE status = ${sql.raw(PROCESSING)} AND lease_expires_at < now()
          LIMIT 1000
          FOR UPDATE SKIP LOCKED)
        RETURNING status`)
      const failed = rows.filter((r) => r.status === 'failed').length
      return { requeued: rows.length - failed, failed }
    },

    /**
     * One count per backlog status, each on that status's partial index (the statuses are
     * SQL literals, so the planner matches the index predicates): the cost follows the
     * backlog, not the table, so it stays cheap at any number of analysed conversations.
     * Chosen over counters kept by every status change: those would put one hot row in
     * every ingest and claim transaction (all instances contending on it) and touch the
     * claim path; over estimates (pg_class, EXPLAIN): a small backlog must read exactly.
     */
    async backlogCounts(): Promise<Record<BacklogStatus, number>> {
      const rows = await database.query<Record<BacklogStatus, number>>(BACKLOG_COUNTS)
      const out = Object.fromEntries(BACKLOG_STATUSES.map((s) => [s, 0])) as Record<BacklogStatus, number>
      for (const s of BACKLOG_STATUSES) out[s] = Number(rows[0]?.[s] ?? 0)
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

    /** Puts a dead letter back in the queue with fresh attempts; null when `id` is no dead letter. */
    async retryDeadLetter(id: string): Promise<{ id: string; status: ConversationStatus } | null> {
      const rows = await db
        .update(conversations)
        .set({ status: 'pending', attempts: 0, availableAt: new Date(), updatedAt: new Date() })
        .where(and(eq(conversations.id, id), eq(conversations.status, 'failed')))
        .returning({ id: conversations.id, status: conversations.status })
      return rows[0] ?? null
    }
  }
}

export type ConversationsRepository = ReturnType<typeof conversationsRepository>
