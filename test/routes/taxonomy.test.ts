// The taxonomy endpoint serves src/domain.ts as it is, to read keys only.
import t from 'tap'
import {
  COMMON_TOPICS,
  CONVERSATION_STATUSES,
  INTENT_DEFINITIONS,
  INTENTS,
  ROLES,
  SENTIMENT_DEFINITIONS,
  SENTIMENT_SCORE_BANDS,
  SENTIMENTS,
  URGENCIES,
  URGENCY_RUBRIC
} from '../../src/domain.ts'
import { backendEnv, buildTestApp } from '../helper.ts'

t.test('the taxonomy is the domain module\'s lists and definitions, for read keys only', async (t) => {
  const app = await buildTestApp(t, { ...(await backendEnv(t, 'pglite')), AUTH: 'on', WORKER_ENABLED: 'false' })
  const read = (await app.repos.apiKeys.create({ name: 'analyst', scopes: ['read'], tier: 'free' })).key
  const ingest = (await app.repos.apiKeys.create({ name: 'producer', scopes: ['ingest'], tier: 'free' })).key
  const get = (key?: string) => app.inject({ url: '/api/v1/taxonomy', headers: key ? { authorization: `Bearer ${key}` } : {} })

  t.equal((await get()).statusCode, 401, 'no key')
  t.equal((await get(ingest)).statusCode, 403, 'a key without the read scope')
  const res = await get(read)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(
    body.sentiments,
    SENTIMENTS.map((name) => ({ name, definition: SENTIMENT_DEFINITIONS[name], score_band: [...SENTIMENT_SCORE_BANDS[name]] }))
  )
  t.same(body.urgencies, URGENCIES.map((name) => ({ name, definition: URGENCY_RUBRIC[name] })))
  t.same(body.intents.map((i: { name: string }) => i.name), INTENTS, 'intents in precedence order')
  t.ok(body.intents.every((i: { name: keyof typeof INTENT_DEFINITIONS; definition: string }) => i.definition === INTENT_DEFINITIONS[i.name]))
  t.same(body.roles, ROLES)
  t.same(body.statuses, CONVERSATION_STATUSES)
  t.same(body.common_topics, COMMON_TOPICS)
})
