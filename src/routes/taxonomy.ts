// GET /api/v1/taxonomy: the labels an insight can carry and what each means, straight from
// src/domain.ts, so clients (the console's filters, load scripts) never keep a copy that drifts.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import {
  COMMON_TOPICS,
  CONVERSATION_STATUSES,
  INTENT_DEFINITIONS,
  INTENT_PRECEDENCE,
  ROLES,
  SENTIMENT_DEFINITIONS,
  SENTIMENT_SCORE_BANDS,
  SENTIMENTS,
  URGENCIES,
  URGENCY_RUBRIC
} from '../domain.ts'
import { ErrorBody } from './schemas.ts'

const Label = Type.Object({ name: Type.String(), definition: Type.String() })

export const TaxonomyOut = Type.Object({
  sentiments: Type.Array(
    Type.Object({
      name: Type.String(),
      definition: Type.String(),
      score_band: Type.Array(Type.Number(), { minItems: 2, maxItems: 2, description: '[min, max] of sentiment_score for this label' })
    })
  ),
  urgencies: Type.Array(Label, { description: 'lowest first' }),
  intents: Type.Array(Label, { description: 'in precedence order: when several fit, the first wins' }),
  roles: Type.Array(Type.String()),
  statuses: Type.Array(Type.String()),
  common_topics: Type.Array(Type.String(), { description: 'topics the analyzers prefer when one fits; others occur too' })
})

// built once: the domain is constant for the life of the process
const taxonomy = {
  sentiments: SENTIMENTS.map((name) => ({ name, definition: SENTIMENT_DEFINITIONS[name], score_band: [...SENTIMENT_SCORE_BANDS[name]] })),
  urgencies: URGENCIES.map((name) => ({ name, definition: URGENCY_RUBRIC[name] })),
  intents: INTENT_PRECEDENCE.map((name) => ({ name, definition: INTENT_DEFINITIONS[name] })),
  roles: [...ROLES],
  statuses: [...CONVERSATION_STATUSES],
  common_topics: [...COMMON_TOPICS]
}

const taxonomyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/v1/taxonomy',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['analysts'],
        summary: 'Sentiments, urgencies and intents with their definitions, roles, statuses and common topics',
        response: { 200: TaxonomyOut, '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async () => taxonomy
  )
}

export default taxonomyRoutes
