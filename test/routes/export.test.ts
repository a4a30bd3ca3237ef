// Exports over real HTTP on both back ends: CSV that a strict RFC 4180 parser reads back
// to exactly what /insights serves, NDJSON likewise, the filters, the formula guard, hostile
// text at the contract's limits, and a client that disconnects mid-export leaving nothing
// behind.
import { parse } from 'csv-parse/sync'
import t from 'tap'
import { Agent, request } from 'undici'
import { FILL_INSIGHTS_SQL, fillInsightsParams } from '../../loadtest/insights-fill.ts'
import { CSV_COLUMNS, CSV_TOPIC_SEPARATOR, csvRecords, EXPORT_BATCH_ROWS } from '../../src/routes/export.ts'
import { backendEnv, backends, buildTestApp, listen, waitFor } from '../helper.ts'

type Insight = Record<string, unknown> & { topics: string[]; tokens: { input: number; output: number } }

/** An insight as a CSV row reads back: every cell a string. */
const asCsvRow = (i: Insight) =>
  CSV_COLUMNS.map((c) =>
    c === 'topics'
      ? i.topics.join(CSV_TOPIC_SEPARATOR)
      : c === 'input_tokens'
        ? String(i.tokens.input)
        : c === 'output_tokens'
          ? String(i.tokens.output)
          : String(i[c])
  )

/** Strict RFC 4180 parse: CRLF records, quotes only where quoted, same column count everywhere. */
const parseCsv = (text: string): string[][] => parse(text, { record_delimiter: '\r\n', relax_quotes: false, relax_column_count: false })

// biome-ignore lint/suspicious/noExplicitAny: a fabricated presented insight for the formatter
const fakeInsight = (over: Record<string, unknown>): any => ({
  conversation_id: '01a2c3d4-0000-7000-8000-000000000001',
  source: 'web-chat',
  sentiment: 'negative',
  sentiment_score: -0.5,
  topics: ['billing'],
  intent: 'complaint',
  urgency: 'high',
  summary: 'Charged twice.',
  language: 'en',
  model: 'm',
  prompt_version: 'v1',
  cached: false,
  tokens: { input: 1, output: 2 },
  cost_usd: 0,
  created_at: '2026-01-01T00:00:00.000Z',
  ...over
})

t.test('a cell a spreadsheet would run as a formula is prefixed with a quote; numbers are not', async (t) => {
  const starts = ['=1+1', '+1', '-1+2', '@SUM(A1)', '\tcmd', '\rcmd', '＝1']
  for (const s of starts) {
    const [row] = parseCsv(csvRecords([fakeInsight({ summary: s, topics: [s] })]))
    const cell = (c: string) => row![CSV_COLUMNS.indexOf(c)]
    t.equal(cell('summary'), `'${s}`, `summary ${JSON.stringify(s)}`)
    t.equal(cell('topics'), `'${s}`, `topics ${JSON.stringify(s)}`)
  }
  const [row] = parseCsv(csvRecords([fakeInsight({ sentiment_score: -0.75, summary: 'fine = ok, + - @' })]))
  t.equal(row![CSV_COLUMNS.indexOf('sentiment_score')], '-0.75', 'a negative score stays a number')
  t.equal(row![CSV_COLUMNS.indexOf('summary')], 'fine = ok, + - @', 'only the first character matters')
  t.equal(row![CSV_COLUMNS.indexOf('cached')], 'false', 'booleans read as words')
})

t.test('hostile text at the contract\'s limits round-trips through CSV quoting', async (t) => {
  const nasty = [
    '"'.repeat(32_000),
    ',\r\n'.repeat(10_666),
    `${'"a",'.repeat(8_000)}`,
    '\n'.repeat(32_000),
    'é😀"\r'.repeat(6_400)
  ]
  const items = nasty.map((summary, i) => fakeInsight({ summary, source: `s${i}`, topics: [summary.slice(0, 40), 'x'] }))
  const rows = parseCsv(csvRecords(items))
  t.equal(rows.length, nasty.length)
  for (const [i, s] of nasty.entries()) {
    t.equal(rows[i]![CSV_COLUMNS.indexOf('summary')], s, `case ${i}: summary exact`)
    t.equal(rows[i]![CSV_COLUMNS.indexOf('topics')], `${s.slice(0, 40)}${CSV_TOPIC_SEPARATOR}x`, `case ${i}: topics exact`)
  }
  // 500 rows of 32,000 characters: a 16 MB export chunk, quoted in one pass
  const big = Array.from({ length: 500 }, (_, i) => fakeInsight({ summary: `${i}${'",\r\n'.repeat(8_000)}` }))
  const parsed = parseCsv(csvRecords(big))
  t.equal(parsed.length, 500)
  t.equal(parsed[499]![CSV_COLUMNS.indexOf('summary')], `499${'",\r\n'.repeat(8_000)}`)
})

for (const backend of backends()) {
  t.test(backend, async (t) => {
    const app = await buildTestApp(t, { ...(await backendEnv(t, backend)), WORKER_ENABLED: 'false' })
    const base = await listen(app)
    // A client of our own, closed before the app: undici keeps a spare connection open that
    // never sends a request, and the server's close would wait for its headers timeout.
    const client = new Agent()
    t.teardown(() => client.close())
    const get = (path: string, opts: { highWaterMark?: number } = {}) => request(`${base}${path}`, { ...opts, dispatcher: client })
    // more than two batches, so paging inside the export is exercised
    const N = EXPORT_BATCH_ROWS * 2 + 517
    const newest = new Date()
    await app.database.raw(FILL_INSIGHTS_SQL, fillInsightsParams(1, N, newest))

    /** Every insight /insights serves for a query, newest first, through its own paging. */
    const listAll = async (query: string) => {
      const items: Insight[] = []
      let cursor: string | null = null
      do {
        const res = await app.inject({ url: `/api/v1/insights?limit=500&${query}${cursor ? `&cursor=${cursor}` : ''}` })
        const page = res.json() as { items: Insight[]; next_cursor: string | null }
        items.push(...page.items)
        cursor = page.next_cursor
      } while (cursor)
      return items
    }

    t.test('CSV: header row, then every insight in list order, read back exactly by a strict parser', async (t) => {
      const res = await get(`/api/v1/insights/export?format=csv`)
      t.equal(res.statusCode, 200)
      t.equal(res.headers['content-type'], 'text/csv; charset=utf-8; header=present')
      t.match(res.headers['content-disposition'], /^attachment; filename="gleaner-insights-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.csv"$/)
      t.equal(res.headers['transfer-encoding'], 'chunked', 'streamed, not buffered with a length')
      t.ok(res.headers['x-content-type-options'], 'the API\'s security headers apply')
      const text = await res.body.text()
      t.ok(text.endsWith('\r\n'), 'records end with CRLF')
      const [header, ...rows] = parseCsv(text)
      t.same(header, CSV_COLUMNS)
      const expected = await listAll('')
      t.equal(rows.length, N)
      t.same(rows, expected.map(asCsvRow), 'the same rows, in the same order, as the list')
      t.ok(rows.some((r) => r[CSV_COLUMNS.indexOf('summary')]!.includes('"charged twice, again"\r\n')), 'quoted cells survive')
    })

    t.test('CSV is the default format', async (t) => {
      const res = await get(`/api/v1/insights/export?urgency=high`)
      t.equal(res.headers['content-type'], 'text/csv; charset=utf-8; header=present')
      const rows = parseCsv(await res.body.text()).slice(1)
      t.same(rows, (await listAll('urgency=high')).map(asCsvRow))
    })

    t.test('NDJSON: one insight per line, as /insights serves it', async (t) => {
      const res = await get(`/api/v1/insights/export?format=ndjson`)
      t.equal(res.statusCode, 200)
      t.equal(res.headers['content-type'], 'application/x-ndjson; charset=utf-8')
      t.match(res.headers['content-disposition'], /filename="gleaner-insights-.+\.ndjson"$/)
      const text = await res.body.text()
      t.ok(text.endsWith('\n'))
      const lines = text.slice(0, -1).split('\n').map((l) => JSON.parse(l))
      t.same(lines, await listAll(''))
    })

    t.test('every filter of /insights narrows the export the same way', async (t) => {
      const since = new Date(newest.getTime() - 900_000).toISOString()
      const until = new Date(newest.getTime() - 300_000).toISOString()
      const queries = [
        'sentiment=negative',
        'urgency=medium',
        'intent=refund_request',
        'topic=billing',
        'source=fill-3',
        `since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`,
        'sentiment=positive&source=fill-1&topic=login'
      ]
      for (const q of queries) {
        const res = await get(`/api/v1/insights/export?format=ndjson&${q}`)
        const text = await res.body.text()
        const lines = text ? text.slice(0, -1).split('\n').map((l) => JSON.parse(l)) : []
        const expected = await listAll(q)
        t.ok(expected.length > 0 && expected.length < N, `${q}: the fixture has some matches, not all`)
        t.same(lines, expected, q)
      }
      const empty = await get(`/api/v1/insights/export?source=nobody`)
      t.equal(await empty.body.text(), `${CSV_COLUMNS.join(',')}\r\n`, 'no match: the header row alone')
    })

    t.test('bad filters and formats are 400s in the contract\'s shape, before any byte of export', async (t) => {
      for (const q of ['format=xlsx', 'sentiment=angry', 'since=yesterday', 'since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z', 'limit=5']) {
        const res = await app.inject({ url: `/api/v1/insights/export?${q}` })
        t.equal(res.statusCode, 400, q)
        t.match(res.json(), { error: { code: String, message: String } }, q)
      }
    })

    t.test('a client that disconnects mid-export stops it and leaves nothing behind', async (t) => {
      const inProgress = async () => (await app.metrics.exportsInProgress.get()).values[0]?.value ?? 0
      t.equal(await inProgress(), 0)
      // ~12 MB of NDJSON, three times what loopback buffers (~4 MB here) take from a client that stops reading
      await app.database.raw(FILL_INSIGHTS_SQL, fillInsightsParams(N + 1, 25_000, new Date(newest.getTime() - N * 1000)))
      // a client that reads the headers and then stops reading: the server fills the socket and waits
      const res = await get(`/api/v1/insights/export?format=ndjson`, { highWaterMark: 1024 })
      t.equal(res.statusCode, 200)
      await waitFor(async () => (await inProgress()) === 1, { what: 'the export in flight' })
      res.body.destroy()
      await waitFor(async () => (await inProgress()) === 0, { what: 'the export ended after the disconnect' })
      const after = await get(`/api/v1/insights/export?source=fill-0`)
      t.equal(after.statusCode, 200, 'the next export is served')
      t.equal(parseCsv(await after.body.text()).length - 1, (await listAll('source=fill-0')).length)
    })
  })
}
