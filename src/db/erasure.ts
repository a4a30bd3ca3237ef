// Erasure: a data subject's conversations go, with their work-queue rows, idempotency keys,
// insights (the rollup triggers take them out of the summaries in the same transaction) and
// the analysis cache entries made from their text; an audit row says who asked, how and
// which ids, never what.
import { sql } from 'drizzle-orm'
import { v7 as uuidv7 } from 'uuid'
import { cacheKey } from '../pipeline/normalize.ts'
import type { Database } from './client.ts'

/** How the conversations to erase are picked. */
export type ErasureSelector =
  | { kind: 'id'; id: string }
  | { kind: 'external_id'; source: string; externalId: string }
  | { kind: 'metadata'; key: string; value: string | number }

/**
 * Conversations erased per request: a customer with years of history must not hold one
 * transaction (and its locks) for minutes; the answer says whether more remain, and the
 * request is idempotent, so the caller repeats it until none do.
 */
export const ERASURE_MAX_PER_REQUEST = 1_000

export interface ErasureResult {
  erased: string[]
  /** the analysis cache keys removed, for the caller to drop from its memory too */
  cacheKeys: string[]
  more: boolean
  auditId: string
}

export function erasureRepository(database: Database) {
  return {
    /**
     * Erases up to ERASURE_MAX_PER_REQUEST matching conversations in one transaction.
     * `analyzers` are the model and prompt version whose cache keys are removed besides the
     * ones each insight was made with (the current analyzer may have cached the same text).
     */
    async erase(selector: ErasureSelector, actor: string, analyzers: { model: string; promptVersion: string }[]): Promise<ErasureResult> {
      const match =
        selector.kind === 'id'
          ? sql`c.id = ${selector.id}`
          : selector.kind === 'external_id'
            ? // every producer's: the key's (source, external_id) prefix serves it
            sql`c.id IN (SELECT conversation_id FROM conversation_keys WHERE source = ${selector.source} AND external_id = ${selector.externalId})`
            : // containment, so the jsonb_path_ops index serves it
              sql`c.metadata @> jsonb_build_object(${selector.key}::text, ${JSON.stringify(selector.value)}::jsonb)`
      return database.transaction(async (tx) => {
        const rows = await database.query<{ id: string; text_hash: string; model: string | null; prompt_version: string | null }>(
          sql`SELECT c.id, c.text_hash, i.model, i.prompt_version FROM conversations c
              LEFT JOIN insights i ON i.conversation_id = c.id
              WHERE ${match} ORDER BY c.id LIMIT ${ERASURE_MAX_PER_REQUEST + 1} FOR UPDATE OF c`,
          tx
        )
        const batch = rows.slice(0, ERASURE_MAX_PER_REQUEST)
        const ids = batch.map((r) => r.id)
        const keys = new Set<string>()
        if (ids.length) {
          for (const r of batch) {
            if (r.model && r.prompt_version) keys.add(cacheKey(r.text_hash, r.model, r.prompt_version))
            for (const a of analyzers) keys.add(cacheKey(r.text_hash, a.model, a.promptVersion))
          }
          const idArray = `{${ids.join(',')}}`
          await database.query(sql`DELETE FROM analysis_cache WHERE key = ANY(${`{${[...keys].join(',')}}`}::text[])`, tx)
          // The queue rows first: a batch storing one of these insights right now holds its
          // queue row until it commits, so this waits for it, and the insight delete after it
          // (a statement with a fresh snapshot) then sees that insight. A batch that comes
          // later finds no queue row and stores nothing.
          await database.query(sql`DELETE FROM conversation_queue WHERE conversation_id = ANY(${idArray}::uuid[])`, tx)
          await database.query(sql`DELETE FROM insights WHERE conversation_id = ANY(${idArray}::uuid[])`, tx)
          await database.query(sql`DELETE FROM conversation_keys WHERE conversation_id = ANY(${idArray}::uuid[])`, tx)
          await database.query(sql`DELETE FROM conversations WHERE id = ANY(${idArray}::uuid[])`, tx)
        }
        const auditId = uuidv7()
        await database.query(
          sql`INSERT INTO erasures (id, actor, selector, conversation_ids, erased)
              VALUES (${auditId}, ${actor}, ${selector.kind}, ${`{${ids.join(',')}}`}::uuid[], ${ids.length})`,
          tx
        )
        return { erased: ids, cacheKeys: [...keys], more: rows.length > ERASURE_MAX_PER_REQUEST, auditId }
      })
    }
  }
}

export type ErasureRepository = ReturnType<typeof erasureRepository>
