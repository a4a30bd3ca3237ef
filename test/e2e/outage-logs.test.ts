// During a database outage the logs say what failed, but never carry what a failed query
// held: no key hash (an authentication look-up) and no conversation text (an ingest).
// The logger is the production one (createLogger), writing to a capture.

import t from 'tap'
import { hashKey } from '../../src/db/api-keys.ts'
import { createLogger } from '../../src/logger.ts'
import { buildTestApp, testConfig } from '../helper.ts'
import { pgClusterSkip, startCluster } from '../pg-cluster.ts'

t.test('logs during an outage hold neither key hashes nor conversation text', { skip: pgClusterSkip }, async (t) => {
  const cluster = await startCluster(t)
  const lines: string[] = []
  const env = { DATABASE_URL: cluster.url, AUTH: 'on', WORKER_ENABLED: 'false', LOG_LEVEL: 'info', KEY_CACHE_TTL_MS: '0' }
  const logger = createLogger(testConfig(env), { write: (s: string) => void lines.push(s) })
  const app = await buildTestApp(t, env, { logger })
  const { key } = await app.repos.apiKeys.create({ name: 'outage-logs', scopes: ['ingest', 'read'], tier: 'pro' })
  const secretText = `the customer's secret words ${process.pid}-${Date.now()}`
  await cluster.stop()
  const headers = { authorization: `Bearer ${key}` }
  const read = await app.inject({ url: '/api/v1/insights', headers })
  t.equal(read.statusCode, 503, 'a read with a key that must be looked up: 503')
  await cluster.start()
  // the key is looked up (and cached nowhere: KEY_CACHE_TTL_MS=0) before the outage hits the insert
  const ingestUp = await app.inject({ method: 'POST', url: '/api/v1/conversations', headers, payload: { source: 'web', messages: [{ role: 'user', content: 'warm up the pool please' }] } })
  t.equal(ingestUp.statusCode, 202)
  await cluster.stop()
  const ingest = await app.inject({
    method: 'POST',
    url: '/api/v1/conversations/batch',
    headers,
    payload: { conversations: [{ source: 'web', messages: [{ role: 'user', content: secretText }] }] }
  })
  t.equal(ingest.statusCode, 503, 'ingest during the outage: 503')
  await cluster.start()

  const all = lines.join('')
  t.ok(lines.some((l) => JSON.parse(l).level >= 40), 'the outage is logged')
  t.notOk(all.includes(hashKey(key)), 'no key hash in the logs')
  t.notOk(all.includes(key), 'no key in the logs')
  t.notOk(all.includes(secretText), 'no conversation text in the logs')
})
