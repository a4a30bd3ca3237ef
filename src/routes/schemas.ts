// Route schemas (TypeBox): the source of truth for validation, response serialisation,
// types and the OpenAPI document. Limits come from config, so they are built per app.
import { type Static, type TInteger, Type } from 'typebox'
import type { Config } from '../config.ts'
import {
  BACKLOG_STATUSES,
  CONVERSATION_STATUSES,
  INTENTS,
  InsightSchema,
  literals as lits,
  MessageSchema,
  SENTIMENTS,
  TIERS,
  URGENCIES
} from '../domain.ts'
import { CIRCUIT_STATES } from '../pipeline/breaker.ts'
import { PAUSE_REASONS } from '../pipeline/worker.ts'

/** An object with one integer count per label, written out from the label list. */
export function countsOf<const K extends readonly string[]>(labels: K) {
  return Type.Object(Object.fromEntries(labels.map((k) => [k, Type.Integer()])) as { [P in K[number]]: TInteger })
}

export function conversationSchemas(config: Config) {
  const Message = Type.Object(
    { ...MessageSchema.properties, content: Type.String({ minLength: 1, maxLength: config.MAX_CONTENT_CHARS }) },
    { additionalProperties: false }
  )
  const ConversationIn = Type.Object(
    {
      source: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$' }),
      external_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      messages: Type.Array(Message, { minItems: 1, maxItems: config.MAX_MESSAGES }),
      metadata: Type.Optional(Type.Object({}, { additionalProperties: true }))
    },
    { additionalProperties: false, $id: 'ConversationIn' }
  )
  const BatchIn = Type.Object(
    {
      // items are validated one by one in the handler, so one bad item rejects only itself
      conversations: Type.Array(Type.Unknown(), { minItems: 1, maxItems: config.BATCH_MAX_ITEMS })
    },
    { additionalProperties: false }
  )
  return { Message, ConversationIn, BatchIn }
}

export type ConversationIn = Static<ReturnType<typeof conversationSchemas>['ConversationIn']>

export const Status = lits(CONVERSATION_STATUSES)
export const Tier = lits(TIERS)

export const IngestOut = Type.Object({ id: Type.String(), status: Status, duplicate: Type.Boolean() })

export const ErrorBody = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    details: Type.Optional(Type.Unknown())
  }),
  request_id: Type.String()
})

export const BatchOut = Type.Object({
  results: Type.Array(
    Type.Object({
      index: Type.Integer(),
      id: Type.Optional(Type.String()),
      status: Type.Optional(Status),
      duplicate: Type.Optional(Type.Boolean()),
      error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String(), details: Type.Optional(Type.Unknown()) }))
    })
  ),
  accepted: Type.Integer(),
  duplicates: Type.Integer(),
  rejected: Type.Integer()
})

export const InsightOut = InsightSchema

export const ConversationOut = Type.Object({
  id: Type.String(),
  source: Type.String(),
  external_id: Type.Union([Type.String(), Type.Null()]),
  messages: Type.Array(MessageSchema),
  metadata: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()]),
  status: Status,
  received_at: Type.String({ format: 'date-time' }),
  analyzed_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  attempts: Type.Integer(),
  skip_reason: Type.Union([Type.String(), Type.Null()]),
  insight: Type.Union([InsightOut, Type.Null()])
})

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) })

const Filters = {
  source: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  sentiment: Type.Optional(lits(SENTIMENTS)),
  topic: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  intent: Type.Optional(lits(INTENTS)),
  urgency: Type.Optional(lits(URGENCIES)),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  until: Type.Optional(Type.String({ format: 'date-time' }))
}

export const InsightsQuery = Type.Object(
  {
    ...Filters,
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 }))
  },
  { additionalProperties: false }
)
export const SummaryQuery = Type.Object(
  {
    ...Filters,
    // compares A/B prompt variants (PROMPT_VARIANTS): the summary of one prompt's insights
    prompt_version: Type.Optional(Type.String({ minLength: 1, maxLength: 64 }))
  },
  { additionalProperties: false }
)

export const EXPORT_FORMATS = ['csv', 'ndjson'] as const
export type ExportFormat = (typeof EXPORT_FORMATS)[number]
export const ExportQuery = Type.Object(
  { ...Filters, format: Type.Optional(lits(EXPORT_FORMATS)) },
  { additionalProperties: false }
)

export const InsightsPage = Type.Object({
  items: Type.Array(InsightOut),
  next_cursor: Type.Union([Type.String(), Type.Null()])
})

export const SummaryOut = Type.Object({
  total: Type.Integer(),
  by_sentiment: countsOf(SENTIMENTS),
  by_urgency: countsOf(URGENCIES),
  top_topics: Type.Array(
    Type.Object({
      topic: Type.String(),
      count: Type.Integer(),
      previous_count: Type.Union([Type.Integer(), Type.Null()], {
        description: 'with since: the count in the period of the same length just before it; null without since'
      })
    })
  ),
  by_day: Type.Array(Type.Object({ day: Type.String(), count: Type.Integer(), avg_sentiment: Type.Number() })),
  by_source: Type.Array(Type.Object({ source: Type.String(), count: Type.Integer(), avg_sentiment: Type.Number() }), {
    description: 'the busiest sources, most insights first'
  }),
  previous_total: Type.Union([Type.Integer(), Type.Null()], {
    description: 'with since: the total in the period of the same length just before it; null without since'
  }),
  previous_by_sentiment: Type.Union([countsOf(SENTIMENTS), Type.Null()], {
    description: 'with since: the sentiments in the period of the same length just before it; null without since'
  })
})

export const HEALTH_STATUSES = ['ok', 'degraded', 'stuck'] as const

export const HealthOut = Type.Object({
  status: lits(HEALTH_STATUSES),
  version: Type.String(),
  uptime_s: Type.Integer(),
  queue_size: Type.Integer(),
  worker_running: Type.Boolean(),
  circuit: lits(CIRCUIT_STATES),
  instance_id: Type.String(),
  paused_reason: Type.Union([lits(PAUSE_REASONS), Type.Null()]),
  backlog: countsOf(BACKLOG_STATUSES),
  claims: Type.Object(
    {
      in_flight: Type.Integer({ description: 'in batches of this instance; their leases are renewed while they run' }),
      stranded: Type.Integer({ description: 'held but idle: their release failed (the database was away) and is retried every sweep; >0 is degraded' })
    },
    { description: "this instance's claims on conversations" }
  ),
  last_progress_at: Type.String(),
  /** null without REDIS_URL (per-process limits, nothing to fail) */
  rate_limit_store: Type.Union([
    Type.Object({
      policy: lits(['local', 'open', 'closed'] as const),
      degraded_reason: Type.Union([Type.String(), Type.Null()]),
      degraded_since: Type.Union([Type.String(), Type.Null()])
    }),
    Type.Null()
  ]),
  budget: Type.Union([
    Type.Object({ limit_usd: Type.Number(), spent_usd: Type.Number(), remaining_usd: Type.Number(), resets_at: Type.String() }),
    Type.Null()
  ]),
  /** each model endpoint's own breaker, when MODEL_FALLBACKS (or prompt variants) route between them */
  model_endpoints: Type.Optional(Type.Array(Type.Object({ name: Type.String(), model: Type.String(), state: lits(CIRCUIT_STATES) })))
})

/** Ids are UUIDs inside; to clients they are opaque, so a malformed one is simply unknown (404). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * A time PostgreSQL can store and compare. RFC 3339 allows what JavaScript or PostgreSQL
 * cannot hold (a leap second, year 0000, years past 9999): those are a 400, never a 500.
 */
export const storableInstant = (d: Date) => !Number.isNaN(d.getTime()) && d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999
