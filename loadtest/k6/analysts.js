// k6 load test: analysts reading what Gleaner produced (docs/api.md, "Analysts").
//
//   GLEANER_URL=http://127.0.0.1:3000 GLEANER_API_KEY=gln_... k6 run loadtest/k6/analysts.js
//
// Scenarios (constant arrival rates, each its own p95 threshold):
//   browse   GET /api/v1/insights with random filters, following next_cursor for a few pages
//   summary  GET /api/v1/insights/summary with random filters
//   lookup   GET /api/v1/conversations/:id for known ids
// setup() reads the labels to filter by from /api/v1/taxonomy (never a copy that drifts)
// and collects conversation ids from /api/v1/insights; when there are fewer than SEED_MIN
// and the key also has scope `ingest`, it seeds conversations with one batch so lookups have
// something to read (insights appear once the worker analyses them).
//
// The key needs scope `read` (and `ingest` to seed) and a tier whose rate limit covers the
// run; a 429 counts as a failure. At most (BROWSE_RATE × MAX_PAGES + SUMMARY_RATE +
// LOOKUP_RATE) requests a second: the defaults, 85/s, stay under the enterprise tier's
// default 6,000 reads a minute.
//
// Environment: GLEANER_URL, GLEANER_API_KEY, DURATION (3m), BROWSE_RATE (20/s),
// SUMMARY_RATE (5/s), LOOKUP_RATE (20/s), MAX_PAGES (3), SEED_MIN (50),
// P95_BROWSE_MS (300), P95_SUMMARY_MS (500), P95_LOOKUP_MS (200).
import { check } from 'k6'
import http from 'k6/http'
import { BASE_URL, headers, json, makeConversation, SOURCES } from './producers.js'

const DURATION = __ENV.DURATION || '3m'
const MAX_PAGES = Number(__ENV.MAX_PAGES || 3)
const SEED_MIN = Number(__ENV.SEED_MIN || 50)

const rateScenario = (exec, rate) => ({
  executor: 'constant-arrival-rate',
  exec,
  rate,
  timeUnit: '1s',
  duration: DURATION,
  preAllocatedVUs: Math.max(5, Math.ceil(rate / 2)),
  maxVUs: Math.max(20, rate * 4)
})

export const options = {
  scenarios: {
    browse: rateScenario('browseInsights', Number(__ENV.BROWSE_RATE || 20)),
    summary: rateScenario('readSummary', Number(__ENV.SUMMARY_RATE || 5)),
    lookup: rateScenario('readConversation', Number(__ENV.LOOKUP_RATE || 20))
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{scenario:browse}': [`p(95)<${Number(__ENV.P95_BROWSE_MS || 300)}`],
    'http_req_duration{scenario:summary}': [`p(95)<${Number(__ENV.P95_SUMMARY_MS || 500)}`],
    'http_req_duration{scenario:lookup}': [`p(95)<${Number(__ENV.P95_LOOKUP_MS || 200)}`]
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max']
}

const pick = (arr) => arr[Math.floor(Math.random() * arr.length)]

/**
 * The labels filters may use, as the server defines them (GET /api/v1/taxonomy). Fails the
 * run at setup if the server cannot say: filtering by guessed labels would test nothing.
 */
export function loadTaxonomy() {
  const res = http.get(`${BASE_URL}/api/v1/taxonomy`, { headers: headers(), tags: { name: 'setup' } })
  const body = json(res)
  if (res.status !== 200 || !body || !Array.isArray(body.intents)) {
    throw new Error(`GET /api/v1/taxonomy answered ${res.status}: the key needs scope read`)
  }
  const names = (list) => list.map((x) => x.name)
  return {
    sentiments: names(body.sentiments),
    urgencies: names(body.urgencies),
    intents: names(body.intents),
    statuses: body.statuses,
    topics: body.common_topics
  }
}

/** A random AND of filters, as an analyst's dashboard would send; sometimes none. */
export function randomFilters(taxonomy) {
  const f = {}
  if (Math.random() < 0.4) f.sentiment = pick(taxonomy.sentiments)
  if (Math.random() < 0.3) f.urgency = pick(taxonomy.urgencies)
  if (Math.random() < 0.2) f.intent = pick(taxonomy.intents)
  if (Math.random() < 0.3) f.topic = pick(taxonomy.topics)
  if (Math.random() < 0.2) f.source = pick(SOURCES)
  if (Math.random() < 0.5) f.since = new Date(Date.now() - (1 + Math.floor(Math.random() * 7)) * 864e5).toISOString()
  if (Math.random() < 0.2) {
    // until after since (the API refuses the reverse with a 400), somewhere before now
    const from = f.since ? Date.parse(f.since) : Date.now() - 7 * 864e5
    f.until = new Date(from + Math.random() * (Date.now() - from)).toISOString()
  }
  return f
}

const query = (params) =>
  Object.entries(params)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&')

/** Conversation ids to look up: from existing insights, seeded with one batch if too few. */
export function collectConversationIds(runId) {
  const ids = new Set()
  let cursor = null
  for (let page = 0; page < 10 && ids.size < 500; page++) {
    const params = { limit: 100 }
    if (cursor) params.cursor = cursor
    const res = http.get(`${BASE_URL}/api/v1/insights?${query(params)}`, { headers: headers(), tags: { name: 'setup' } })
    const body = json(res)
    if (res.status !== 200 || !body || !Array.isArray(body.items)) break
    for (const item of body.items) ids.add(item.conversation_id)
    cursor = body.next_cursor
    if (!cursor) break
  }
  if (ids.size < SEED_MIN) {
    const conversations = []
    for (let i = 0; i < SEED_MIN; i++) conversations.push(makeConversation(`${runId}-seed-${i}`))
    const res = http.post(`${BASE_URL}/api/v1/conversations/batch`, JSON.stringify({ conversations }), {
      headers: headers(),
      tags: { name: 'setup' },
      timeout: '60s',
      // a read-only key may not seed: that is reported below, not counted as a failed request
      responseCallback: http.expectedStatuses(207, 401, 403)
    })
    const body = json(res)
    if (res.status === 207 && body && Array.isArray(body.results)) {
      for (const r of body.results) if (r.id) ids.add(r.id)
    } else {
      console.warn(`seeding conversations answered ${res.status}; lookups use the ${ids.size} ids found`)
    }
  }
  return [...ids]
}

export function setup() {
  const runId = __ENV.RUN_ID || `k6-${Date.now().toString(36)}`
  const taxonomy = loadTaxonomy()
  const ids = collectConversationIds(runId)
  if (ids.length === 0) console.warn('no conversation ids found or seeded: the lookup scenario will do nothing')
  return { runId, ids, taxonomy }
}

const isNewestFirst = (items) => items.every((x, i) => i === 0 || Date.parse(items[i - 1].created_at) >= Date.parse(x.created_at))

/** GET /api/v1/insights with filters, then up to MAX_PAGES pages through next_cursor. */
export function browseInsights(data) {
  const filters = randomFilters(data.taxonomy)
  const limit = pick([20, 50, 100])
  let cursor = null
  for (let page = 0; page < MAX_PAGES; page++) {
    const params = { ...filters, limit }
    if (cursor) params.cursor = cursor
    const res = http.get(`${BASE_URL}/api/v1/insights?${query(params)}`, {
      headers: headers(),
      tags: { name: 'GET /api/v1/insights', page: page === 0 ? 'first' : 'next' }
    })
    const body = json(res) || {}
    const items = Array.isArray(body.items) ? body.items : null
    check(res, {
      'insights: 200': (r) => r.status === 200,
      'insights: items array, next_cursor string or null': () =>
        items !== null && (body.next_cursor === null || typeof body.next_cursor === 'string'),
      'insights: at most limit items': () => items !== null && items.length <= limit,
      'insights: newest first': () => items !== null && isNewestFirst(items),
      'insights: filters honoured': () =>
        items?.every(
          (x) =>
            (!filters.sentiment || x.sentiment === filters.sentiment) &&
            (!filters.urgency || x.urgency === filters.urgency) &&
            (!filters.intent || x.intent === filters.intent) &&
            (!filters.source || x.source === filters.source) &&
            (!filters.topic || (Array.isArray(x.topics) && x.topics.includes(filters.topic))) &&
            (!filters.since || Date.parse(x.created_at) >= Date.parse(filters.since)) &&
            (!filters.until || Date.parse(x.created_at) < Date.parse(filters.until))
        ) === true
    })
    cursor = body.next_cursor
    if (res.status !== 200 || !cursor) break
  }
}

/** GET /api/v1/insights/summary with the same kind of filters (no limit or cursor). */
export function readSummary(data) {
  const res = http.get(`${BASE_URL}/api/v1/insights/summary?${query(randomFilters(data.taxonomy))}`, {
    headers: headers(),
    tags: { name: 'GET /api/v1/insights/summary' }
  })
  const body = json(res) || {}
  check(res, {
    'summary: 200': (r) => r.status === 200,
    'summary: shape': () =>
      typeof body.total === 'number' &&
      typeof body.by_sentiment === 'object' &&
      typeof body.by_urgency === 'object' &&
      Array.isArray(body.top_topics) &&
      Array.isArray(body.by_day) &&
      Array.isArray(body.by_source)
  })
}

/** GET /api/v1/conversations/:id for an id known to exist. */
export function readConversation(data) {
  if (!data.ids || data.ids.length === 0) return
  const id = pick(data.ids)
  const res = http.get(`${BASE_URL}/api/v1/conversations/${encodeURIComponent(id)}`, {
    headers: headers(),
    tags: { name: 'GET /api/v1/conversations/:id' }
  })
  const body = json(res) || {}
  check(res, {
    'conversation: 200': (r) => r.status === 200,
    'conversation: shape': () =>
      body.id === id &&
      Array.isArray(body.messages) &&
      data.taxonomy.statuses.includes(body.status) &&
      (body.insight === null || typeof body.insight === 'object')
  })
}

export default function (data) {
  browseInsights(data)
}
