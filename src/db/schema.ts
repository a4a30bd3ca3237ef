// Drizzle table definitions: the single source of the database schema. drizzle-kit turns
// changes here into SQL files in migrations/ (npm run db:generate).
import { sql } from 'drizzle-orm'
import {
  bigint,
  boolean,
  check,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  uuid
} from 'drizzle-orm/pg-core'
import {
  type ConversationStatus,
  type InsightFields,
  type Intent,
  type Message,
  QUEUE_STATES,
  type QueueState,
  type Scope,
  type Sentiment,
  type Tier,
  type Urgency
} from '../domain.ts'

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' })

/**
 * A status as an SQL literal, for the statements that must spell it out (partial index
 * predicates, which the planner matches textually, and hand-written hot-path SQL): typed,
 * so a status renamed in the domain fails to compile here instead of matching nothing.
 */
export const statusLiteral = (status: ConversationStatus) => `'${status}'`

/*
 * A conversation is written once, at ingest, and never updated: the churn of analysis
 * (claims, leases, attempts, back-off, dead letters) lives in conversation_queue, a narrow
 * table holding only the work still to do, and the outcome is the insight. Before, every
 * status change rewrote this wide row (no HOT update could apply: the status was in partial
 * indexes), so a 1M drain grew the heap by a quarter and doubled the primary key, and the
 * claim walked dead entries of an index on the big table. A conversation's status is read
 * from where it is (see STATUS_OF in conversations.ts).
 */
export const conversations = pgTable(
  'conversations',
  {
    // UUIDv7, made by the app: time-ordered, so the primary key index grows at its right edge.
    id: uuid('id').primaryKey(),
    // the idempotency scope: who sent it (api_keys.producer; '' for rows from before 0003 and for AUTH=off)
    producer: text('producer').notNull().default(''),
    source: text('source').notNull(),
    externalId: text('external_id'),
    messages: jsonb('messages').$type<Message[]>().notNull(),
    metadata: jsonb('metadata').$type<Record<string, unknown>>(),
    // the prefilter's verdict at ingest: set means skipped, never analysed
    skipReason: text('skip_reason'),
    textHash: text('text_hash').notNull(),
    receivedAt: tstz('received_at').notNull().defaultNow()
  },
  (t) => [
    // erasure by a metadata key (a customer id): containment (@>) only, so the smaller jsonb_path_ops
    index('conversations_metadata_gin').using('gin', t.metadata.op('jsonb_path_ops'))
  ]
)

/**
 * The idempotency keys: (source, external_id) is unique per producer, so one producer can
 * neither squat another's keys nor be answered "duplicate" with another's text. A table of
 * its own (not a unique index on conversations) so that conversations can be partitioned by
 * time, which a unique index across partitions does not allow. Source first: an erasure by
 * (source, external_id) across producers reads this key's prefix.
 */
export const conversationKeys = pgTable(
  'conversation_keys',
  {
    source: text('source').notNull(),
    externalId: text('external_id').notNull(),
    producer: text('producer').notNull(),
    conversationId: uuid('conversation_id').notNull()
  },
  (t) => [
    primaryKey({ name: 'conversation_keys_pk', columns: [t.source, t.externalId, t.producer] }),
    // erasure and retention remove a conversation's key by its id
    index('conversation_keys_conversation_idx').on(t.conversationId)
  ]
)

/**
 * Work still to do: one row per conversation that is pending, claimed (processing) or dead
 * (failed). A stored insight deletes its row in the same statement, so the table is as
 * small as the backlog and stays in memory however large conversations grows.
 */
export const conversationQueue = pgTable(
  'conversation_queue',
  {
    conversationId: uuid('conversation_id').primaryKey(),
    state: text('state').$type<QueueState>().notNull().default('pending'),
    // claims take the oldest first: the conversation's own received_at, copied here
    receivedAt: tstz('received_at').notNull(),
    // earliest time a pending row may be claimed again (back-off after a failed attempt)
    availableAt: tstz('available_at').notNull(),
    attempts: integer('attempts').notNull().default(0),
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: tstz('lease_expires_at'),
    lastError: text('last_error'),
    updatedAt: tstz('updated_at').notNull().defaultNow()
  },
  (t) => [
    // claims take the oldest pending rows; partial, so it stays as small as the pending backlog
    index('conversation_queue_pending_idx').on(t.receivedAt, t.conversationId).where(sql.raw(`state = ${statusLiteral('pending')}`)),
    // the sweep finds expired leases of crashed instances
    index('conversation_queue_processing_idx').on(t.leaseExpiresAt).where(sql.raw(`state = ${statusLiteral('processing')}`)),
    // dead letters, newest failure first
    index('conversation_queue_failed_idx').on(t.updatedAt, t.conversationId).where(sql.raw(`state = ${statusLiteral('failed')}`)),
    // the CHECK is written out from the domain list; a new state needs a migration (db:generate shows the diff)
    check('conversation_queue_state_ck', sql.raw(`state in (${QUEUE_STATES.map((s) => `'${s}'`).join(', ')})`))
  ]
)

export const insights = pgTable(
  'insights',
  {
    // one insight per conversation, enforced here: a lease that expires during a slow model
    // call can never produce a second insight. No foreign key: its check locked the
    // conversation row (FOR KEY SHARE) for every insight stored, dirtying pages of the
    // write-once table; the store statement stores only for a queue row it deletes, and
    // erasure deletes insights itself (src/db/erasure.ts).
    conversationId: uuid('conversation_id').primaryKey(),
    source: text('source').notNull(),
    sentiment: text('sentiment').$type<Sentiment>().notNull(),
    // named as the domain names the field, so an insight is stored and read without renaming
    sentiment_score: real('sentiment_score').notNull(),
    topics: text('topics').array().notNull().default(sql`'{}'::text[]`),
    // the closed taxonomy; migration 0001 mapped older free-form labels onto it
    intent: text('intent').$type<Intent>().notNull(),
    urgency: text('urgency').$type<Urgency>().notNull(),
    summary: text('summary').notNull(),
    language: text('language').notNull(),
    model: text('model').notNull(),
    promptVersion: text('prompt_version').notNull(),
    cached: boolean('cached').notNull().default(false),
    inputTokens: integer('input_tokens').notNull().default(0),
    outputTokens: integer('output_tokens').notNull().default(0),
    costUsd: doublePrecision('cost_usd').notNull().default(0),
    // the claims it took (1 unless a model call failed and was retried), kept from the queue row
    attempts: integer('attempts').notNull().default(1),
    createdAt: tstz('created_at').notNull().defaultNow()
  },
  (t) => [
    // keyset pagination, newest first; one composite index per equality filter keeps a
    // filtered page an index range scan at millions of rows. Ascending on purpose: the page
    // query's ORDER BY … DESC (NULLS FIRST) is a backward scan of these, while a DESC index
    // (drizzle writes NULLS LAST) would not match it and the planner would sort instead.
    index('insights_created_idx').on(t.createdAt, t.conversationId),
    index('insights_source_created_idx').on(t.source, t.createdAt, t.conversationId),
    index('insights_sentiment_created_idx').on(t.sentiment, t.createdAt, t.conversationId),
    index('insights_urgency_created_idx').on(t.urgency, t.createdAt, t.conversationId),
    index('insights_intent_created_idx').on(t.intent, t.createdAt, t.conversationId),
    index('insights_topics_gin').using('gin', t.topics)
  ]
)

/*
 * Rollups: insight counts per UTC day, kept by statement triggers on insights (migration
 * 0002) in the transaction that stores, re-analyses or erases an insight, so they are exact
 * whatever writes (any worker on any instance, an erasure, a cascade) and whoever commits
 * first. A summary reads a few thousand of these rows instead of scanning insights.
 *  - insight_rollups: every filter but topic (source × sentiment × urgency × intent);
 *  - insight_rollups_narrow: the same without intent, ten times fewer rows, for the
 *    summaries that filter on no intent (the console's overview, an unfiltered summary);
 *  - insight_topic_rollups: the same per topic, for a topic filter and for top topics
 *    under a sentiment, urgency or intent filter;
 *  - insight_topic_totals: topics per source only, the narrow table top topics read when
 *    nothing else filters (the console's overview).
 * Rows whose count fell to zero (erasure) stay: reads skip them, and they are few.
 */
export const insightRollups = pgTable(
  'insight_rollups',
  {
    day: date('day', { mode: 'string' }).notNull(),
    source: text('source').notNull(),
    sentiment: text('sentiment').$type<Sentiment>().notNull(),
    urgency: text('urgency').$type<Urgency>().notNull(),
    intent: text('intent').$type<Intent>().notNull(),
    n: bigint('n', { mode: 'number' }).notNull(),
    scoreSum: doublePrecision('score_sum').notNull()
  },
  (t) => [primaryKey({ name: 'insight_rollups_pk', columns: [t.day, t.source, t.sentiment, t.urgency, t.intent] })]
)

export const insightRollupsNarrow = pgTable(
  'insight_rollups_narrow',
  {
    day: date('day', { mode: 'string' }).notNull(),
    source: text('source').notNull(),
    sentiment: text('sentiment').$type<Sentiment>().notNull(),
    urgency: text('urgency').$type<Urgency>().notNull(),
    n: bigint('n', { mode: 'number' }).notNull(),
    scoreSum: doublePrecision('score_sum').notNull()
  },
  (t) => [primaryKey({ name: 'insight_rollups_narrow_pk', columns: [t.day, t.source, t.sentiment, t.urgency] })]
)

export const insightTopicRollups = pgTable(
  'insight_topic_rollups',
  {
    day: date('day', { mode: 'string' }).notNull(),
    topic: text('topic').notNull(),
    source: text('source').notNull(),
    sentiment: text('sentiment').$type<Sentiment>().notNull(),
    urgency: text('urgency').$type<Urgency>().notNull(),
    intent: text('intent').$type<Intent>().notNull(),
    n: bigint('n', { mode: 'number' }).notNull(),
    scoreSum: doublePrecision('score_sum').notNull()
  },
  (t) => [
    primaryKey({ name: 'insight_topic_rollups_pk', columns: [t.day, t.topic, t.source, t.sentiment, t.urgency, t.intent] }),
    // a topic filter reads one topic's days
    index('insight_topic_rollups_topic_day_idx').on(t.topic, t.day)
  ]
)

export const insightTopicTotals = pgTable(
  'insight_topic_totals',
  {
    day: date('day', { mode: 'string' }).notNull(),
    source: text('source').notNull(),
    topic: text('topic').notNull(),
    n: bigint('n', { mode: 'number' }).notNull()
  },
  (t) => [primaryKey({ name: 'insight_topic_totals_pk', columns: [t.day, t.source, t.topic] })]
)

/**
 * One line per erasure request: who asked, how the conversations were selected, which ids
 * went. Never the selector's value or any content: the audit must not keep what was erased.
 */
export const erasures = pgTable('erasures', {
  id: uuid('id').primaryKey(),
  at: tstz('at').notNull().defaultNow(),
  actor: text('actor').notNull(),
  selector: text('selector').notNull(),
  conversationIds: uuid('conversation_ids').array().notNull(),
  erased: integer('erased').notNull()
})

// UNLOGGED (migration 0005; drizzle has no word for it): the cache is derived data, so a crash
// that empties it costs only model calls, and its rows write no WAL. With the fake model a
// logged cache row was ~700 B of WAL and most of the cache's 0.05-0.07 ms a conversation
// (loadtest/DRAIN-BUDGET.md). A streaming replica sees it empty; only the primary's worker reads it.
export const analysisCache = pgTable(
  'analysis_cache',
  {
    // sha256(normalized text hash, model, prompt version)
    key: text('key').primaryKey(),
    model: text('model').notNull(),
    promptVersion: text('prompt_version').notNull(),
    insight: jsonb('insight').notNull(),
    hits: integer('hits').notNull().default(0),
    createdAt: tstz('created_at').notNull().defaultNow(),
    expiresAt: tstz('expires_at').notNull()
  },
  // BRIN, not btree: only the hourly purge reads expiry, and rows arrive in expiry order, so one
  // summary tuple per 128 pages serves it; a btree paid an index insert on every row. No
  // autosummarize: PGlite has no autovacuum to take the requests, and PostgreSQL's vacuum after
  // inserts summarizes the new ranges anyway; a range not yet summarized is read, not missed.
  (t) => [index('analysis_cache_expires_brin').using('brin', t.expiresAt)]
)

// Every field of the domain's insight is a column of the same name and type: a field added
// in domain.ts fails to compile here until the table has it (and db:generate its migration).
type InsightColumns = Pick<typeof insights.$inferSelect, keyof InsightFields>
const _insightColumnsMatchTheDomain: [InsightFields, InsightColumns] extends [InsightColumns, InsightFields] ? true : never = true
void _insightColumnsMatchTheDomain

// Tokens, calls and cost per UTC day and model: the budget reads today's row, /usage reads all.
export const modelUsage = pgTable(
  'model_usage',
  {
    day: date('day', { mode: 'string' }).notNull(),
    model: text('model').notNull(),
    calls: integer('calls').notNull().default(0),
    inputTokens: bigint('input_tokens', { mode: 'number' }).notNull().default(0),
    outputTokens: bigint('output_tokens', { mode: 'number' }).notNull().default(0),
    costUsd: doublePrecision('cost_usd').notNull().default(0)
  },
  (t) => [primaryKey({ columns: [t.day, t.model] })]
)

export const apiKeys = pgTable('api_keys', {
  id: uuid('id').primaryKey(),
  name: text('name').notNull(),
  // sha256 of the whole key; the key itself is never stored
  keyHash: text('key_hash').notNull().unique(),
  prefix: text('prefix').notNull(),
  // the idempotency scope of what this key ingests: its own id unless created for an existing
  // producer (a rotated key keeps its predecessor's); '' for keys from before migration 0003
  producer: text('producer').notNull().default(''),
  scopes: text('scopes').array().$type<Scope[]>().notNull(),
  tier: text('tier').$type<Tier>().notNull().default('free'),
  createdAt: tstz('created_at').notNull().defaultNow(),
  revokedAt: tstz('revoked_at')
})

// Conversations accepted per key and period ('d:2026-11-26', 'm:2026-11'): quotas survive
// restarts and are shared by every instance.
export const keyUsage = pgTable(
  'key_usage',
  {
    keyId: uuid('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    period: text('period').notNull(),
    conversations: bigint('conversations', { mode: 'number' }).notNull().default(0)
  },
  (t) => [primaryKey({ columns: [t.keyId, t.period] })]
)
