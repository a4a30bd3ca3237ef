// Erasure routes (admin): a conversation by id, or everything of one data subject by its
// idempotency key or a metadata key such as a customer id. Idempotent: erasing what is
// already gone answers the same shape with nothing erased.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { ErasureSelector } from '../db/erasure.ts'
import { badRequest } from '../errors.ts'
import { ErrorBody, IdParams, UUID_RE } from './schemas.ts'

const ErasureOut = Type.Object({
  erased: Type.Integer({ description: 'conversations erased by this request' }),
  conversation_ids: Type.Array(Type.String()),
  more: Type.Boolean({ description: 'more conversations match: repeat the request' }),
  audit_id: Type.String()
})

/** A metadata key of a stored conversation: short, plain; the value is matched exactly. */
const MetadataKey = Type.String({ minLength: 1, maxLength: 100 })
const ErasureBody = Type.Union([
  Type.Object(
    { source: Type.String({ minLength: 1, maxLength: 64 }), external_id: Type.String({ minLength: 1, maxLength: 200 }) },
    { additionalProperties: false }
  ),
  Type.Object(
    { metadata_key: MetadataKey, metadata_value: Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Number()]) },
    { additionalProperties: false }
  )
])

const erasureRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const erase = async (req: FastifyRequest, selector: ErasureSelector) => {
    const { analyzer, cache } = app.pipeline
    const actor = req.apiKey?.id ?? 'auth-off'
    const result = await app.repos.erasure.erase(selector, actor, [{ model: analyzer.model, promptVersion: analyzer.promptVersion }])
    cache.forget(result.cacheKeys)
    // the audit line: who, how, which ids; never the selector's value or any content
    req.log.warn(
      { audit: 'erasure', audit_id: result.auditId, by_key_id: req.apiKey?.id ?? null, selector: selector.kind, erased: result.erased.length, more: result.more },
      'conversations erased'
    )
    return { erased: result.erased.length, conversation_ids: result.erased, more: result.more, audit_id: result.auditId }
  }

  app.delete(
    '/api/v1/conversations/:id',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Erase a conversation, its insight and its cache entries (idempotent)',
        params: IdParams,
        response: { 200: ErasureOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => {
      if (!UUID_RE.test(req.params.id)) throw badRequest('id must be a conversation id (a UUID)')
      return erase(req, { kind: 'id', id: req.params.id })
    }
  )

  app.post(
    '/api/v1/erasure',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: "Erase a data subject's conversations by source and external_id, or by a metadata key and value (idempotent)",
        body: ErasureBody,
        response: { 200: ErasureOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => {
      const b = req.body
      const selector: ErasureSelector =
        'external_id' in b
          ? { kind: 'external_id', source: b.source, externalId: b.external_id }
          : { kind: 'metadata', key: b.metadata_key, value: b.metadata_value }
      return erase(req, selector)
    }
  )
}

export default erasureRoutes
