// The analyst queries stay index scans at scale: on 100,000 insights, every filter's page
// query and the worker's claim are planned on an index, never a sequential scan of the table.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { BACKLOG_COUNTS } from '../../src/db/conversations.ts'
import { insightsRepository } from '../../src/db/insights.ts'
import { INTENTS, SENTIMENTS, URGENCIES } from '../../src/domain.ts'
import { backendEnv, testConfig } from '../helper.ts'

const N = 100_000

t.test('plans on a 100k-row table use the indexes', { skip: process.env.DATABASE_URL ? false : 'needs DATABASE_URL' }, async (t) => {
  // the fixture is one 100k-row statement (with the rollup triggers): no statement timeout for it on a busy machine
  const database = await openDatabase(testConfig({ ...(await backendEnv(t, 'postgres')), DB_STATEMENT_TIMEOUT_MS: '0' }), pino({ level: 'silent' }))
  t.teardown(() => database.close())
  // rows spread over 30 days, 5 sources, every sentiment, intent and urgency, 40 topics; 1% still pending
  await database.query(sql`
    INSERT INTO conversations (id, source, messages, text_hash, received_at)
    SELECT gleaner_uuidv7(now() - (g || ' seconds')::interval * 26), 'src-' || (g % 5), '[]'::jsonb, md5(g::text), now() - (g || ' seconds')::interval * 26
    FROM generate_series(1, ${N}) g`)
  await database.query(sql`
    INSERT INTO conversation_queue (conversation_id, received_at, available_at)
    SELECT id, received_at, received_at FROM conversations WHERE abs(hashtext(id::text)) % 100 = 0`)
  await database.query(sql`
    INSERT INTO insights (conversation_id, source, sentiment, sentiment_score, topics, intent, urgency, summary, language, model, prompt_version, created_at)
    SELECT id, source, (string_to_array(${SENTIMENTS.join(',')}, ','))[1 + (abs(hashtext(id::text)) % ${SENTIMENTS.length})], 0,
      ARRAY['topic-' || (abs(hashtext(id::text)) % 40), 'topic-' || (abs(hashtext(text_hash)) % 40)],
      (string_to_array(${INTENTS.join(',')}, ','))[1 + (abs(hashtext(text_hash)) % ${INTENTS.length})],
      (string_to_array(${URGENCIES.join(',')}, ','))[1 + (abs(hashtext(id::text || 'u')) % ${URGENCIES.length})], 's', 'en', 'local-lexicon-v1', 'v1', received_at
    FROM conversations c WHERE NOT EXISTS (SELECT 1 FROM conversation_queue q WHERE q.conversation_id = c.id)`)
  await database.query(sql`ANALYZE`)

  const repo = insightsRepository(database)
  type Node = { 'Node Type': string; 'Relation Name'?: string; 'Index Name'?: string; Plans?: Node[] }
  const plan = async (q: unknown) => {
    const rows = await database.query<{ 'QUERY PLAN': [{ Plan: Node }] }>(sql`EXPLAIN (FORMAT JSON) ${q as ReturnType<typeof sql>}`)
    const nodes: Node[] = []
    const walk = (n: Node) => {
      nodes.push(n)
      for (const c of n.Plans ?? []) walk(c)
    }
    walk(rows[0]!['QUERY PLAN'][0].Plan)
    return nodes
  }
  const cursor = { at: new Date(Date.now() - 5 * 86_400_000), id: 'ffffffff-ffff-ffff-ffff-ffffffffffff' }
  const cases: [string, Parameters<typeof repo.listQuery>[0], boolean][] = [
    ['no filter', {}, false],
    ['no filter, deep cursor', {}, true],
    ['source', { source: 'src-3' }, true],
    ['sentiment', { sentiment: 'negative' }, true],
    ['urgency', { urgency: 'high' }, false],
    ['intent', { intent: 'complaint' }, true],
    ['topic', { topic: 'topic-7' }, false],
    ['since/until', { since: new Date(Date.now() - 2 * 86_400_000), until: new Date(Date.now() - 86_400_000) }, false],
    ['source + sentiment', { source: 'src-1', sentiment: 'positive' }, true]
  ]
  for (const [name, filters, withCursor] of cases) {
    const nodes = await plan(repo.listQuery(filters, 50, withCursor ? cursor : undefined))
    t.notOk(
      nodes.some((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'insights'),
      `${name}: no sequential scan of insights`
    )
    t.ok(
      nodes.some((n) => n['Index Name']?.startsWith('insights_')),
      `${name}: served by ${nodes.map((n) => n['Index Name']).filter(Boolean).join(', ')}`
    )
  }
  const claimPlan = await plan(
    sql`SELECT conversation_id FROM conversation_queue WHERE state = 'pending' AND available_at <= now() ORDER BY received_at, conversation_id LIMIT 100 FOR UPDATE SKIP LOCKED`
  )
  t.ok(
    claimPlan.some((n) => n['Index Name'] === 'conversation_queue_pending_idx'),
    'the claim walks the partial pending index of the queue'
  )
  const backlogPlan = await plan(BACKLOG_COUNTS)
  t.notOk(
    backlogPlan.some((n) => n['Relation Name'] === 'conversations' || n['Relation Name'] === 'insights'),
    'the backlog counts read only the queue, whose size is the backlog\'s, never the conversations'
  )
  // pending is the whole queue here, so reading all of it is the planner's right answer;
  // the rarer states must come from their partial indexes, not a pass over the pending rows
  for (const index of ['conversation_queue_processing_idx', 'conversation_queue_failed_idx']) {
    t.ok(
      backlogPlan.some((n) => n['Index Name'] === index),
      `the backlog counts read ${index}`
    )
  }
})
