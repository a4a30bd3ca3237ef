// What the two peers of bench:peers share, so that they differ only in their queue: the same
// request schema (the contract's fields and roles, without Gleaner's size limits and
// prefilter), two plain tables with a primary key each and nothing else, Gleaner's own
// analyzers, and the start-up handshake the bench's process helpers expect.
//
// Env: DATABASE_URL, REDIS_URL (BullMQ), WORKER (on | off), MODEL_BASE_URL and MODEL_NAME
// (unset: Gleaner's local analyzer), MODEL_CONCURRENCY (model calls in flight), PORT.
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { request } from 'undici'
import type { AnalysisInput } from '../../src/analyzers/analyzer.ts'
import { createLocalAnalyzer, LOCAL_MODEL } from '../../src/analyzers/local.ts'
import { readCompletion } from '../../src/analyzers/openai-compatible.ts'
import { parseInsightsAnswer } from '../../src/analyzers/parse.ts'
import { CURRENT_PROMPT_VERSION, promptFor } from '../../src/analyzers/prompts.ts'
import { type InsightFields, type Message, ROLES } from '../../src/domain.ts'

export const env = {
  databaseUrl: process.env.DATABASE_URL ?? '',
  redisUrl: process.env.REDIS_URL ?? '',
  worker: process.env.WORKER !== 'off',
  modelBaseUrl: process.env.MODEL_BASE_URL,
  modelName: process.env.MODEL_NAME ?? 'fake-1',
  modelConcurrency: Number(process.env.MODEL_CONCURRENCY ?? 8),
  port: Number(process.env.PORT ?? 0)
}

/** Conversations per model call: what Gleaner sends at BATCH_INITIAL=BATCH_MAX=20 in the bench. */
export const MODEL_BATCH = 20

/** The same pool size as Gleaner's DB_POOL_MAX default, so no side wins by connections. */
export const pool = new pg.Pool({ connectionString: env.databaseUrl, max: 10 })

export const DDL = `
CREATE TABLE IF NOT EXISTS conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), source text NOT NULL, external_id text,
  messages jsonb NOT NULL, metadata jsonb, received_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS insights (
  conversation_id uuid PRIMARY KEY, sentiment text NOT NULL, sentiment_score real NOT NULL,
  topics jsonb NOT NULL, intent text NOT NULL, urgency text NOT NULL, summary text NOT NULL,
  language text NOT NULL, model text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`

export const INSERT_CONVERSATION = 'INSERT INTO conversations (source, external_id, messages, metadata) VALUES ($1, $2, $3, $4) RETURNING id'

export interface ConversationBody {
  source: string
  external_id?: string
  messages: Message[]
  metadata?: Record<string, unknown>
}

export const bodySchema = {
  type: 'object',
  required: ['source', 'messages'],
  additionalProperties: false,
  properties: {
    source: { type: 'string', minLength: 1, maxLength: 200 },
    external_id: { type: 'string', maxLength: 200 },
    metadata: { type: 'object' },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        additionalProperties: false,
        properties: { role: { enum: ROLES }, content: { type: 'string' }, at: { type: 'string' } }
      }
    }
  }
} as const

export const conversationParams = (c: ConversationBody) => [c.source, c.external_id ?? null, JSON.stringify(c.messages), c.metadata ? JSON.stringify(c.metadata) : null]

/** The conversations a worker was handed, read back by id: jobs carry a reference, not the body. */
export async function loadConversations(ids: string[]): Promise<AnalysisInput[]> {
  const { rows } = await pool.query<AnalysisInput>('SELECT id, source, messages FROM conversations WHERE id = ANY($1::uuid[])', [ids])
  return rows
}

export type Analysed = { id: string; insight: InsightFields }

const local = createLocalAnalyzer()
const prompt = promptFor(CURRENT_PROMPT_VERSION)

/**
 * Gleaner's analysis without Gleaner's pipeline: the local analyzer as the worker calls it,
 * or one chat call with Gleaner's prompt and answer parser. No retries or re-asks of missing
 * items here: a job that gets no insight fails and the queue retries it.
 */
export async function analyze(items: AnalysisInput[]): Promise<Analysed[]> {
  if (!env.modelBaseUrl) {
    const { results } = await local.analyzeBatch(items)
    return results.flatMap((r) => (r.ok ? [{ id: r.id, insight: r.insight }] : []))
  }
  const res = await request(`${env.modelBaseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: env.modelName,
      messages: [
        { role: 'system', content: prompt.system },
        { role: 'user', content: prompt.buildUser(items) }
      ],
      temperature: 0,
      max_tokens: 64 + 250 * items.length,
      response_format: { type: 'json_object' }
    })
  })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`model answered ${res.statusCode}`)
  const parsed = parseInsightsAnswer(readCompletion(text).content ?? '', items.length)
  return items.flatMap((item, i) => {
    const insight = parsed.byIndex.get(i)
    return insight ? [{ id: item.id, insight }] : []
  })
}

const modelName = () => (env.modelBaseUrl ? env.modelName : LOCAL_MODEL)

/** One statement for any number of insights; ON CONFLICT makes a retried job harmless. */
export async function storeInsights(analysed: Analysed[]): Promise<void> {
  if (!analysed.length) return
  const rows = analysed.map(({ id, insight }) => ({ conversation_id: id, ...insight, model: modelName() }))
  await pool.query(
    `INSERT INTO insights (conversation_id, sentiment, sentiment_score, topics, intent, urgency, summary, language, model)
     SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(conversation_id uuid, sentiment text, sentiment_score real, topics jsonb,
       intent text, urgency text, summary text, language text, model text)
     ON CONFLICT (conversation_id) DO NOTHING`,
    [JSON.stringify(rows)]
  )
}

/** Listens and tells the bench where, over IPC, as src/server.ts does; /health names the pid. */
export async function listen(app: FastifyInstance, close: () => Promise<void>): Promise<void> {
  app.get('/health', async () => ({ pid: process.pid }))
  app.addHook('onClose', close)
  const url = await app.listen({ port: env.port, host: '127.0.0.1' })
  process.send?.({ type: 'listening', url, pid: process.pid })
  process.once('SIGTERM', () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1)
    )
  })
}
