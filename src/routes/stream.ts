// GET /api/v1/insights/stream: server-sent events of new insights, with the /insights
// filters, a heartbeat comment so proxies keep the connection, and cleanup on disconnect.

import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Config } from '../config.ts'
import type { InsightFilters, InsightRow } from '../db/insights.ts'
import { filtersFrom } from './insights.ts'
import { presentInsight } from './present.ts'
import { ErrorBody, SummaryQuery } from './schemas.ts'

// a client that stops reading is dropped rather than buffered without bound
const MAX_BUFFERED_BYTES = 1_048_576

export function matches(i: InsightRow, f: InsightFilters): boolean {
  return (
    (f.source === undefined || i.source === f.source) &&
    (f.sentiment === undefined || i.sentiment === f.sentiment) &&
    (f.intent === undefined || i.intent === f.intent) &&
    (f.urgency === undefined || i.urgency === f.urgency) &&
    (f.topic === undefined || i.topics.includes(f.topic)) &&
    (f.since === undefined || i.createdAt >= f.since) &&
    (f.until === undefined || i.createdAt < f.until)
  )
}

const streamRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const open = new Set<ServerResponse>()
  // streams never end on their own: close them so shutdown does not wait for clients
  app.addHook('preClose', async () => {
    for (const res of open) res.end()
  })

  app.get(
    '/api/v1/insights/stream',
    {
      config: { scope: 'read' },
      schema: {
        tags: ['analysts'],
        summary: 'Server-sent events: one `insight` event per new insight matching the filters',
        querystring: SummaryQuery,
        response: { '4xx': ErrorBody, '5xx': ErrorBody }
      }
    },
    async (req, reply) => {
      const filters = filtersFrom(req.query)
      const res = reply.raw
      const unsubscribe = await app.pipeline.insights.subscribe((row) => {
        if (!matches(row, filters)) return
        res.write(`event: insight\nid: ${row.conversationId}\ndata: ${JSON.stringify(presentInsight(row))}\n\n`)
        if (res.writableLength > MAX_BUFFERED_BYTES) {
          req.log.warn({ buffered: res.writableLength }, 'stream client too slow; disconnecting')
          res.destroy()
        }
      })
      reply.hijack()
      const headers = reply.getHeaders() as import('node:http').OutgoingHttpHeaders // security headers and x-request-id set by hooks
      res.writeHead(200, {
        ...headers,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no'
      })
      res.write(`retry: 3000\n: connected ${req.id}\n\n`)
      open.add(res)
      app.metrics.streamClients.inc()
      const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), config.STREAM_HEARTBEAT_MS)
      res.on('close', () => {
        clearInterval(heartbeat)
        unsubscribe()
        open.delete(res)
        app.metrics.streamClients.dec()
      })
    }
  )
}

export default streamRoutes
