// Peer 2 of bench:peers: Fastify + pg-boss, the queue-in-PostgreSQL design most Node
// services reach for when they want one store. POST /conversations inserts the row and sends
// a pg-boss job carrying its id in the same transaction (pg-boss's `db` option); a pg-boss
// worker fetches jobs in batches, reads their rows, runs Gleaner's own analyzer once per
// batch and writes the insights in one statement; pg-boss completes the batch.
//
// Why it is a fair comparison: the same request bodies and the same JSON-schema validation
// by Fastify, the same pg pool size, Gleaner's analyzer and prompt, pg-boss's own defaults
// for retries, retention and maintenance (as people run it), and batches like Gleaner's: 100
// conversations a fetch with the local analyzer (Gleaner's BATCH_MAX), 20 a fetch and a model
// call with the model (what Gleaner sends in the bench). The fetch loop bursts while batches
// come back full, so a drain is never waiting on the polling interval.
import Fastify from 'fastify'
import { PgBoss } from 'pg-boss'
import {
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
/** Gleaner's BATCH_MAX: the local analyzer's batches are as large as Gleaner's can grow. */
const LOCAL_BATCH = 100
/** Local analysis is CPU-bound on one core: two fetchers overlap one's database round trips with the other's analysis. */
const LOCAL_FETCHERS = 2
/** pg-boss's lowest polling interval: only an idle queue waits for it. */
const POLL_S = 0.5

await pool.query(DDL)
// its own pool of the same size: pg-boss's statements and the app's do not queue behind each other
const boss = new PgBoss({ connectionString: env.databaseUrl, max: 10 })
boss.on('error', (err) => console.error('[pg-boss]', err))
await boss.start()
await boss.createQueue(QUEUE)

if (env.worker) {
  const model = env.modelBaseUrl !== undefined
  await boss.work<{ id: string }>(
    QUEUE,
    {
      batchSize: model ? MODEL_BATCH : LOCAL_BATCH,
      localConcurrency: model ? env.modelConcurrency : LOCAL_FETCHERS,
      pollingIntervalSeconds: POLL_S,
      burstWhenBatchFull: true
    },
    async (jobs) => {
      const items = await loadConversations(jobs.map((j) => j.data.id))
      const analysed = await analyze(items)
      await storeInsights(analysed)
      // a batch completes or fails as a whole: a missing insight sends every job back, and
      // ON CONFLICT keeps the ones already stored from being stored twice
      if (analysed.length < items.length) throw new Error(`${items.length - analysed.length} conversations got no insight`)
    }
  )
}

const app = Fastify({ logger: false, bodyLimit: 1_048_576 })
app.post<{ Body: ConversationBody }>('/api/v1/conversations', { schema: { body: bodySchema } }, async (req, reply) => {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const { rows } = await client.query<{ id: string }>(INSERT_CONVERSATION, conversationParams(req.body))
    const id = rows[0]!.id
    await boss.send(QUEUE, { id }, { db: { executeSql: (text, values) => client.query(text, values) } })
    await client.query('COMMIT')
    return reply.code(202).send({ id, status: 'pending' })
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
})

await listen(app, async () => {
  await boss.stop({ graceful: true })
  await pool.end()
})
