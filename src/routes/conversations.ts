// Producer routes (ingest) and the analyst's conversation read.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { Config } from '../config.ts'
import { idempotencyKey, type NewConversation } from '../db/conversations.ts'
import { GroupInserter } from '../db/group-insert.ts'
import type { ConversationStatus, Message } from '../domain.ts'
import { AppError, notFound, validationFailed } from '../errors.ts'
import { storableJson, storableText, textHash } from '../pipeline/normalize.ts'
import { prefilter } from '../pipeline/prefilter.ts'
import { createBodyAjv, describeAjvErrors, type FieldError } from '../validation.ts'
import { presentConversation } from './present.ts'
import { BatchOut, type ConversationIn, ConversationOut, conversationSchemas, ErrorBody, IdParams, IngestOut, UUID_RE } from './schemas.ts'

const isQuotaExceeded = (err: unknown) => err instanceof AppError && err.code === 'QUOTA_EXCEEDED'
/** Idempotency keys are the ingesting key's producer's alone; without keys (AUTH=off) everything is ''. */
const producerOf = (req: FastifyRequest) => req.apiKey?.producer ?? ''


/** Checks JSON Schema cannot say: metadata depth and serialized size. */
function metadataErrors(metadata: unknown, config: Config, prefix = ''): FieldError[] {
  if (metadata === undefined) return []
  const field = `${prefix}metadata`
  const depth = (v: unknown, d: number): number => {
    if (d > config.METADATA_MAX_DEPTH + 1) return d // deep enough to reject; stop walking hostile nesting
    if (v && typeof v === 'object') {
      let max = d
      for (const x of Object.values(v)) max = Math.max(max, depth(x, d + 1))
      return max
    }
    return d - 1
  }
  if (depth(metadata, 1) > config.METADATA_MAX_DEPTH) {
    return [{ field, message: `${field} must be at most ${config.METADATA_MAX_DEPTH} levels deep` }]
  }
  if (Buffer.byteLength(JSON.stringify(metadata)) > config.METADATA_MAX_BYTES) {
    return [{ field, message: `${field} must be at most ${config.METADATA_MAX_BYTES} bytes serialized` }]
  }
  return []
}

// a source a client may name (the contract's pattern); anything else is labelled 'invalid'
const SOURCE_RE = /^[A-Za-z0-9._:-]{1,64}$/

const conversationsRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const { ConversationIn: ConversationSchema, BatchIn } = conversationSchemas(config)
  const validateItem = createBodyAjv().compile(ConversationSchema)
  const { conversations } = app.repos
  const { pipeline, metrics } = app
  const grouped = new GroupInserter(
    (rows) => conversations.insertMany(rows),
    app.database.kind === 'pglite' ? 1 : Math.max(1, Math.floor(config.DB_POOL_MAX / 2))
  )
  // Sources are client-chosen: cap the label set so a buggy producer cannot blow up /metrics.
  const seenSources = new Set<string>()
  const sourceLabel = (s: string) => {
    if (seenSources.has(s)) return s
    if (seenSources.size < 200) {
      seenSources.add(s)
      return s
    }
    return 'other'
  }

  const toRow = (c: ConversationIn, producer: string): NewConversation => {
    // the parsed body's own objects (the schema let through role, content and at only),
    // copied only where the content had to be made storable
    const messages = c.messages.map((m) => {
      const content = storableText(m.content)
      return content === m.content ? m : { ...m, content }
    }) as Message[]
    const verdict = prefilter(messages, pipeline.prefilter)
    return {
      producer,
      source: c.source,
      externalId: c.external_id === undefined ? null : storableText(c.external_id),
      messages,
      metadata: c.metadata === undefined ? null : (storableJson(c.metadata) as Record<string, unknown>),
      textHash: textHash(messages),
      status: verdict.skip ? 'skipped' : 'pending',
      skipReason: verdict.skip ? verdict.reason : null
    }
  }

  const overloaded = () => {
    if (pipeline.worker.pendingBacklog >= config.BACKLOG_HARD_LIMIT) {
      throw new AppError('UNAVAILABLE', `the analysis backlog is over its limit (${config.BACKLOG_HARD_LIMIT}); retry later`, {
        retryAfter: 30
      })
    }
  }

  const count = (source: string, outcome: 'accepted' | 'duplicate' | 'rejected' | 'skipped', n = 1) =>
    metrics.ingested.inc({ source: sourceLabel(source), outcome }, n)
  /** A new conversation stored: counted once, and a skip by the reason ingest's prefilter gave. */
  const countStored = (row: NewConversation) => {
    count(row.source, row.status === 'skipped' ? 'skipped' : 'accepted')
    if (row.status === 'skipped' && row.skipReason) metrics.prefilterSkips.inc({ reason: row.skipReason })
  }

  app.post(
    '/api/v1/conversations',
    {
      config: { scope: 'ingest' },
      // schema and parser rejections never reach the handler: count them here, so the
      // rejected outcome means the same on both ingest routes
      onResponse: async (req, reply) => {
        if (reply.statusCode === 400 || reply.statusCode === 413 || reply.statusCode === 415) {
          const src = (req.body as { source?: unknown } | undefined)?.source
          count(typeof src === 'string' && SOURCE_RE.test(src) ? src : 'invalid', 'rejected')
        }
      },
      schema: {
        tags: ['producers'],
        summary: 'Store one conversation and queue it for analysis',
        body: ConversationSchema,
        response: { 200: IngestOut, 202: IngestOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req, reply) => {
      const body = req.body as ConversationIn
      const errs = metadataErrors(body.metadata, config)
      if (errs.length) throw validationFailed(errs[0]!.message, errs)
      overloaded()
      const row = toRow(body, producerOf(req))
      try {
        await app.quotas.consume(req, 1)
      } catch (err) {
        // a re-post of a stored conversation costs no quota: near the limit it is still a duplicate
        const existing = isQuotaExceeded(err) ? (await conversations.findByKeys([row])).get(idempotencyKey(row.producer, row.source, row.externalId)) : undefined
        if (!existing) throw err
        count(body.source, 'duplicate')
        return reply.code(200).send({ id: existing.id, status: existing.status, duplicate: true })
      }
      const res = await grouped.insert(row).catch(async (err) => {
        await app.quotas.refund(req, 1).catch(() => {})
        throw err
      })
      if (!res) throw new Error('insert returned nothing')
      if (res.duplicate) {
        await app.quotas.refund(req, 1)
        count(body.source, 'duplicate')
        return reply.code(200).send({ id: res.id, status: res.status, duplicate: true })
      }
      countStored(row)
      if (res.status === 'pending') pipeline.enqueue([res.id])
      return reply.code(202).send({ id: res.id, status: res.status, duplicate: false })
    }
  )

  app.post(
    '/api/v1/conversations/batch',
    {
      config: { scope: 'ingest' },
      bodyLimit: config.BATCH_BODY_LIMIT_BYTES,
      schema: {
        tags: ['producers'],
        summary: 'Store up to BATCH_MAX_ITEMS conversations in one transaction, with a result per item',
        body: BatchIn,
        response: { 207: BatchOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req, reply) => {
      const items = (req.body as { conversations: unknown[] }).conversations
      const results: {
        index: number
        id?: string
        status?: ConversationStatus
        duplicate?: boolean
        error?: { code: string; message: string; details?: unknown }
      }[] = new Array(items.length)
      const rows: NewConversation[] = []
      const rowIndex: number[] = []
      const producer = producerOf(req)
      items.forEach((item, index) => {
        let errs: FieldError[] = []
        if (!validateItem(item)) errs = describeAjvErrors(validateItem.errors, `conversations[${index}]`)
        else errs = metadataErrors((item as ConversationIn).metadata, config, `conversations[${index}].`)
        if (errs.length) {
          results[index] = { index, error: { code: 'VALIDATION_FAILED', message: errs[0]!.message, details: errs } }
          const src = (item as { source?: unknown })?.source
          count(typeof src === 'string' && SOURCE_RE.test(src) ? src : 'invalid', 'rejected')
          return
        }
        rows.push(toRow(item as ConversationIn, producer))
        rowIndex.push(index)
      })
      // quota is taken for the rows that are not already stored; near the limit, re-posted
      // duplicates must not be refused (they are refunded below in the common case)
      let prepaidDuplicates = 0
      if (rows.length) {
        overloaded()
        try {
          await app.quotas.consume(req, rows.length)
        } catch (err) {
          if (!isQuotaExceeded(err)) throw err
          prepaidDuplicates = (await conversations.findByKeys(rows)).size
          if (prepaidDuplicates === 0) throw err
          await app.quotas.consume(req, rows.length - prepaidDuplicates)
        }
      }
      // one INSERT statement for the whole batch: it commits or fails as one transaction
      const inserted = rows.length
        ? await conversations.insertMany(rows).catch(async (err) => {
            await app.quotas.refund(req, rows.length - prepaidDuplicates).catch(() => {})
            throw err
          })
        : []
      let accepted = 0
      let duplicates = 0
      const fresh: string[] = []
      inserted.forEach((res, i) => {
        const index = rowIndex[i]!
        const source = rows[i]!.source
        results[index] = { index, id: res.id, status: res.status, duplicate: res.duplicate }
        if (res.duplicate) {
          duplicates++
          count(source, 'duplicate')
        } else {
          accepted++
          countStored(rows[i]!)
          if (res.status === 'pending') fresh.push(res.id)
        }
      })
      if (duplicates > prepaidDuplicates) await app.quotas.refund(req, duplicates - prepaidDuplicates)
      pipeline.enqueue(fresh)
      return reply.code(207).send({ results, accepted, duplicates, rejected: items.length - rows.length })
    }
  )

  app.get(
    '/api/v1/conversations/:id',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['analysts'],
        summary: 'A conversation with its status and insight',
        params: IdParams,
        response: { 200: ConversationOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => {
      // ids are opaque to clients: a malformed one is simply one that does not exist
      if (!UUID_RE.test(req.params.id)) throw notFound('conversation')
      const c = await conversations.getById(req.params.id)
      if (!c) throw notFound('conversation')
      return presentConversation(c, c.insight)
    }
  )
}

export default conversationsRoutes
