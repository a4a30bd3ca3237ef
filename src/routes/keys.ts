// Admin routes for API keys: what `npm run keys` does, over HTTP, so keys can be managed
// while the server holds the embedded database (a PGlite folder is one process's) and from
// anywhere an admin key reaches. The key itself is in the create answer only, once.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { literals, SCOPES } from '../domain.ts'
import { ErrorBody, IdParams, Tier } from './schemas.ts'

const Scope = literals(SCOPES)

const KeyOut = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key: enough to recognise it, never to use it' }),
  scopes: Type.Array(Scope),
  tier: Tier,
  producer: Type.String({
    description: "the idempotency scope of what the key ingests: (source, external_id) is unique per producer; '' for keys from before producers existed"
  }),
  created_at: Type.String({ format: 'date-time' }),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
})

const KeyIn = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    scopes: Type.Array(Scope, { minItems: 1, maxItems: SCOPES.length, uniqueItems: true }),
    tier: Type.Optional(Tier),
    producer: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        pattern: '^[A-Za-z0-9._:-]+$',
        description: "an existing producer to ingest as (a rotated key names its predecessor's); unset → the new key's own id"
      })
    )
  },
  { additionalProperties: false }
)

const keysRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const repo = app.repos.apiKeys

  app.post(
    '/api/v1/keys',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Create an API key; the answer holds the key itself, shown this once',
        body: KeyIn,
        response: { 201: Type.Object({ ...KeyOut.properties, key: Type.String() }), '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req, reply) => {
      const { key, record, createdAt } = await repo.create({
        name: req.body.name,
        scopes: req.body.scopes,
        tier: req.body.tier ?? 'free',
        ...(req.body.producer !== undefined ? { producer: req.body.producer } : {})
      })
      // audit line: who created which key; never the key itself
      req.log.warn(
        {
          audit: 'key_created',
          by_key_id: req.apiKey?.id ?? null,
          key_id: record.id,
          key_prefix: record.prefix,
          scopes: record.scopes,
          tier: record.tier,
          producer: record.producer
        },
        'API key created'
      )
      return reply.code(201).send({ ...record, created_at: createdAt.toISOString(), revoked_at: null, key })
    }
  )

  app.get(
    '/api/v1/keys',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Every API key, newest first, without its secret',
        response: { 200: Type.Object({ items: Type.Array(KeyOut) }), '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async () => {
      const keys = await repo.list()
      return {
        items: keys.map((k) => ({
          id: k.id,
          name: k.name,
          prefix: k.prefix,
          scopes: k.scopes,
          tier: k.tier,
          producer: k.producer,
          created_at: k.createdAt.toISOString(),
          revoked_at: k.revokedAt ? k.revokedAt.toISOString() : null
        }))
      }
    }
  )

  app.post(
    '/api/v1/keys/:id/revoke',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'Revoke a key by its id or its prefix; instances stop accepting it within KEY_CACHE_TTL_MS',
        params: IdParams,
        response: { 200: Type.Object({ revoked: Type.Integer() }), '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req) => {
      const revoked = await repo.revoke(req.params.id)
      req.log.warn({ audit: 'key_revoked', by_key_id: req.apiKey?.id ?? null, target: req.params.id, revoked }, 'API key revoked')
      return { revoked }
    }
  )
}

export default keysRoutes
