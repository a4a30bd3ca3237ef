// k6 soak test: a steady mix of producers and analysts for a long time (1 h by default),
// to catch what only time shows: memory growth, a backlog that creeps up, leaked
// connections, latency drifting upwards, a worker that wedges.
//
//   GLEANER_URL=http://127.0.0.1:3000 GLEANER_API_KEY=gln_... k6 run loadtest/k6/soak.js
//   SOAK_DURATION=10m k6 run loadtest/k6/soak.js
//
// Constant arrival rates, so a slower server gets the same offered load (no coordinated
// omission). The key needs scopes `ingest` and `read` and a tier whose limits and daily
// quota cover the whole run (or AUTH=off with RATE_LIMIT_ANONYMOUS raised).
// teardown() reads /health: the run fails its check if the service ends it stuck or down.
//
// Environment: GLEANER_URL, GLEANER_API_KEY, SOAK_DURATION (1h), INGEST_RATE (20/s),
// BATCH_PER_MIN (6 batches of BATCH_ITEMS), BROWSE_RATE (5/s), SUMMARY_RATE (1/s),
// LOOKUP_RATE (5/s), P95_SINGLE_MS (300), P95_BATCH_MS (2000), P95_BROWSE_MS (300),
// P95_SUMMARY_MS (500), P95_LOOKUP_MS (200).
import { check } from 'k6'
import http from 'k6/http'
import { browseInsights, collectConversationIds, loadTaxonomy, readConversation, readSummary } from './analysts.js'
import { BASE_URL, ingestBatch, ingestOne, json } from './producers.js'

const DURATION = __ENV.SOAK_DURATION || __ENV.DURATION || '1h'

const constant = (exec, rate, timeUnit = '1s') => ({
  executor: 'constant-arrival-rate',
  exec,
  rate,
  timeUnit,
  duration: DURATION,
  preAllocatedVUs: Math.max(2, Math.ceil(rate / 2)),
  maxVUs: Math.max(10, rate * 4)
})

export const options = {
  scenarios: {
    single: constant('ingestOne', Number(__ENV.INGEST_RATE || 20)),
    batch: constant('ingestBatch', Number(__ENV.BATCH_PER_MIN || 6), '1m'),
    browse: constant('browseInsights', Number(__ENV.BROWSE_RATE || 5)),
    summary: constant('readSummary', Number(__ENV.SUMMARY_RATE || 1)),
    lookup: constant('readConversation', Number(__ENV.LOOKUP_RATE || 5))
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{scenario:single}': [`p(95)<${Number(__ENV.P95_SINGLE_MS || 300)}`],
    'http_req_duration{scenario:batch}': [`p(95)<${Number(__ENV.P95_BATCH_MS || 2000)}`],
    'http_req_duration{scenario:browse}': [`p(95)<${Number(__ENV.P95_BROWSE_MS || 300)}`],
    'http_req_duration{scenario:summary}': [`p(95)<${Number(__ENV.P95_SUMMARY_MS || 500)}`],
    'http_req_duration{scenario:lookup}': [`p(95)<${Number(__ENV.P95_LOOKUP_MS || 200)}`]
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max']
}

export { browseInsights, ingestBatch, ingestOne, readConversation, readSummary }

export function setup() {
  const runId = __ENV.RUN_ID || `k6-soak-${Date.now().toString(36)}`
  return { runId, taxonomy: loadTaxonomy(), ids: collectConversationIds(runId) }
}

export function teardown() {
  const res = http.get(`${BASE_URL}/health`, { tags: { name: 'teardown' } })
  const body = json(res) || {}
  console.log(`end of soak: /health ${res.status} ${JSON.stringify(body)}`)
  check(res, {
    'health after soak: 200 (not stuck)': (r) => r.status === 200,
    'health after soak: worker running': () => body.worker_running === true
  })
}

export default function (data) {
  ingestOne(data)
}
