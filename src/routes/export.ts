// GET /api/v1/insights/export: every insight matching the /insights filters as a download,
// CSV (header row, RFC 4180) or NDJSON. Streamed in keyset batches over the same index as
// the list, so memory stays flat at any row count and no connection is held between
// batches; a client that goes away stops the export at the next batch.
import { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { stringify } from 'csv-stringify/sync'
import { Type } from 'typebox'
import type { InsightFilters, InsightRow, InsightsRepository } from '../db/insights.ts'
import { type Insight, InsightSchema } from '../domain.ts'
import type { Metrics } from '../metrics.ts'
import { filtersFrom } from './insights.ts'
import { presentInsight } from './present.ts'
import { ErrorBody, type ExportFormat, ExportQuery, InsightOut } from './schemas.ts'

/**
 * Rows per query. 1,000 keeps one batch (~300 KB of CSV) the most an export holds in memory
 * while making a million rows a thousand short index-range queries, not a million.
 */
export const EXPORT_BATCH_ROWS = 1_000

/** What a list of topics becomes in one CSV cell. */
export const CSV_TOPIC_SEPARATOR = '; '

/** The API's insight fields in the schema's order; the nested token counts become two columns. */
export const CSV_COLUMNS: readonly string[] = Object.keys(InsightSchema.properties).flatMap((k) =>
  k === 'tokens' ? ['input_tokens', 'output_tokens'] : [k]
)

const CSV_OPTIONS = {
  columns: [...CSV_COLUMNS],
  // RFC 4180 ends records with CRLF
  record_delimiter: 'windows',
  // A cell a spreadsheet would run as a formula (=, +, -, @, tab, CR, and their full-width
  // forms) gets a leading ', since summaries and topics come from customer text. Numbers
  // are left alone: a negative sentiment score is not a formula.
  escape_formulas: true,
  // the default casts booleans to "1" and ""
  cast: { boolean: (v: boolean) => String(v) }
} as const

const CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8; header=present',
  ndjson: 'application/x-ndjson; charset=utf-8'
}

export const csvHeader = (): string => stringify([], { ...CSV_OPTIONS, header: true })

/** CSV records (no header) for presented insights. */
export function csvRecords(items: Insight[]): string {
  return stringify(
    // new keys before the spread (see assembleOutcome in store.ts); topics replaces the array
    items.map((i) => ({ input_tokens: i.tokens.input, output_tokens: i.tokens.output, ...i, topics: i.topics.join(CSV_TOPIC_SEPARATOR) })),
    CSV_OPTIONS
  )
}

const ndjsonRecords = (items: Insight[]) => items.map((i) => `${JSON.stringify(i)}\n`).join('')

type Page = { items: InsightRow[]; next?: { at: Date; id: string } }

/**
 * Yields the export batch by batch; pulled by the response stream, so a slow client slows
 * the queries instead of growing a buffer. The gauge counts exports in flight: it falls back
 * when the export ends, fails, or the client disconnects (the stream's destroy returns the
 * generator), which is what the leak test watches.
 */
async function* exportChunks(repo: InsightsRepository, filters: InsightFilters, format: ExportFormat, first: Page, metrics: Metrics) {
  metrics.exportsInProgress.inc()
  try {
    if (format === 'csv') yield csvHeader()
    let page = first
    for (;;) {
      if (page.items.length) {
        const items = page.items.map(presentInsight)
        yield format === 'csv' ? csvRecords(items) : ndjsonRecords(items)
      }
      if (!page.next) return
      page = await repo.list(filters, EXPORT_BATCH_ROWS, page.next)
    }
  } finally {
    metrics.exportsInProgress.dec()
  }
}

const exportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const repo = app.repos.insightReads

  app.get(
    '/api/v1/insights/export',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['analysts'],
        summary: 'Every insight matching the filters, newest first, as a CSV (the default) or NDJSON download, streamed',
        description:
          'CSV: a header row, CRLF records, RFC 4180 quoting, topics joined by "; ", token counts as input_tokens and ' +
          'output_tokens, and text cells that a spreadsheet would run as a formula prefixed with \'. NDJSON: one ' +
          'insight per line, as /api/v1/insights serves it.',
        querystring: ExportQuery,
        response: {
          200: {
            description: 'the export, streamed',
            content: {
              'text/csv': { schema: Type.String() },
              'application/x-ndjson': { schema: InsightOut }
            }
          },
          '4xx': ErrorBody,
          '5xx': ErrorBody
        }
      }
    },
    async (req, reply) => {
      const filters = filtersFrom(req.query)
      const format = req.query.format ?? 'csv'
      // the first batch is read before any byte is sent, so a database outage is still a 503
      const first = await repo.list(filters, EXPORT_BATCH_ROWS)
      const stamp = new Date().toISOString().slice(0, 19).replaceAll(':', '-')
      return reply
        .header('content-type', CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="gleaner-insights-${stamp}Z.${format}"`)
        .header('cache-control', 'no-store')
        // the typed reply expects the schema's shape; a stream of that shape's bytes is what the 200 documents
        .send(Readable.from(exportChunks(repo, filters, format, first, app.metrics), { objectMode: false }) as unknown as string)
    }
  )
}

export default exportRoutes
