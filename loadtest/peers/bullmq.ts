// Peer 1 of bench:peers: Fastify + BullMQ on Redis, the architecture Langfuse runs (its web
// container writes the event and enqueues a BullMQ job holding a reference; a worker reads
// the reference back, processes it and writes the result). Here POST /conversations inserts
// the row into PostgreSQL and adds a job carrying its id; a BullMQ worker in the same process
// reads the row, runs Gleaner's own analyzer and writes the insight row.
//
// Why it is a fair comparison: the same request bodies and the same JSON-schema validation
// by Fastify, the same pg pool size, Gleaner's analyzer and prompt, the job options Langfuse
// uses for its queues (completed jobs removed, failed ones kept, retries with back-off); and
// nothing Gleaner does beyond the job (prefilter, dedup, rollups, indexes) is charged here.
// A model call takes 20 conversations, as Gleaner's does in the bench: BullMQ's open-source
// worker hands its processor one job at a time (batches are a BullMQ Pro feature), so jobs
// wait in a small in-process gatherer until 20 are there, or a few milliseconds pass.
import { Queue, Worker } from 'bullmq'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import type { AnalysisInput } from '../../src/analyzers/analyzer.ts'
import type { InsightFields } from '../../src/domain.ts'
import {
  type Analysed,
  analyze,
  bodySchema,
  type ConversationBody,
  conversationParams,
  DDL,
  env,
  INSERT_CONVERSATION,
  listen,
  loadConversations,
  MODEL_BATCH,
  pool,
  storeInsights
} from './common.ts'

const QUEUE = 'conversation-analysis'
/** The bench gives each run a prefix of its own, so a shared Redis keeps other keys apart. */
const prefix = process.env.BULLMQ_PREFIX ?? 'gleaner-peers'
/** Local analysis is CPU-bound: a few jobs in flight only overlap their two round trips. */
const LOCAL_CONCURRENCY = 10
/** How long a job waits for 19 others before its model call goes out anyway. */
const GATHER_MS = 20

// BullMQ wants maxRetriesPerRequest: null on the worker's blocking connection
const connection = () => new Redis(env.redisUrl, { maxRetriesPerRequest: null })

await pool.query(DDL)
const queue = new Queue(QUEUE, {
  connection: connection(),
  prefix,
  defaultJobOptions: { removeOnComplete: true, removeOnFail: 10_000, attempts: 3, backoff: { type: 'exponential', delay: 500 } }
})

const gathered: Array<{ item: AnalysisInput; done: (r: Analysed[] | Error) => void }> = []
let timer: NodeJS.Timeout | undefined

function flush() {
  clearTimeout(timer)
  timer = undefined
  const batch = gathered.splice(0, MODEL_BATCH)
  analyze(batch.map((g) => g.item)).then(
    (results) => {
      for (const g of batch) g.done(results)
    },
    (err: Error) => {
      for (const g of batch) g.done(err)
    }
  )
}

/** One conversation's insight out of a shared model call of up to MODEL_BATCH. */
function analyzeGathered(item: AnalysisInput): Promise<InsightFields | undefined> {
  return new Promise((resolve, reject) => {
    gathered.push({ item, done: (r) => (r instanceof Error ? reject(r) : resolve(r.find((a) => a.id === item.id)?.insight)) })
    if (gathered.length >= MODEL_BATCH) flush()
    else timer ??= setTimeout(flush, GATHER_MS)
  })
}

const worker = env.worker
  ? new Worker<{ id: string }>(
      QUEUE,
      async (job) => {
        const [item] = await loadConversations([job.data.id])
        if (!item) return // erased before analysis: nothing to do
        const insight = env.modelBaseUrl ? await analyzeGathered(item) : (await analyze([item]))[0]?.insight
        if (!insight) throw new Error('no insight in the answer')
        await storeInsights([{ id: item.id, insight }])
      },
      // enough jobs in flight for MODEL_CONCURRENCY full model calls at once
      { connection: connection(), prefix, concurrency: env.modelBaseUrl ? env.modelConcurrency * MODEL_BATCH : LOCAL_CONCURRENCY }
    )
  : undefined

const app = Fastify({ logger: false, bodyLimit: 1_048_576 })
app.post<{ Body: ConversationBody }>('/api/v1/conversations', { schema: { body: bodySchema } }, async (req, reply) => {
  const { rows } = await pool.query<{ id: string }>(INSERT_CONVERSATION, conversationParams(req.body))
  const id = rows[0]!.id
  // not atomic with the insert (two stores): a crash between them leaves a row no job names,
  // which is the trade this architecture makes for a queue outside the database
  await queue.add('analyze', { id })
  return reply.code(202).send({ id, status: 'pending' })
})

await listen(app, async () => {
  await worker?.close()
  await queue.close()
  await pool.end()
})
