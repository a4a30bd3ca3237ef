// GET /api/v1/insights/stream: server-sent events of new insights, with the /insights
// filters, a heartbeat comment so proxies keep the connection, and cleanup on disconnect.
// One subscription to the insight bus per instance fans out to every client: each insight is
// serialised once, not once per client, and the fan-out yields to the event loop every
// FANOUT_CHUNK clients so a thousand streams cannot starve ingest. Streams are capped per key
// and per instance.

import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Config } from '../config.ts'
import type { InsightFilters, InsightRow } from '../db/insights.ts'
import { AppError } from '../errors.ts'
import { filtersFrom } from './insights.ts'
import { presentInsight } from './present.ts'
import { ErrorBody, SummaryQuery } from './schemas.ts'

// a client that stops reading is dropped rather than buffered without bound
const MAX_BUFFERED_BYTES = 1_048_576
/** Clients written between yields to the event loop: a few ms of work at most. */
const FANOUT_CHUNK = 100
/** Insights waiting for fan-out; beyond this the oldest are dropped (clients can re-read /insights). */
const MAX_FANOUT_BACKLOG = 10_000
/** Seconds a refused stream client is told to wait. */
const STREAM_RETRY_AFTER_S = 5

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

interface StreamClient {
  res: ServerResponse
  filters: InsightFilters
  owner: string
  /** headers sent: events may be written */
  live: boolean
}

const streamRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, { config }) => {
  const clients = new Set<StreamClient>()
  const perOwner = new Map<string, number>()
  const backlog: InsightRow[] = []
  let draining = false
  let subscription: Promise<() => void> | undefined

  const write = (client: StreamClient, frame: string) => {
    if (client.res.destroyed) return
    client.res.write(frame)
    if (client.res.writableLength > MAX_BUFFERED_BYTES) {
      app.log.warn({ buffered: client.res.writableLength }, 'stream client too slow; disconnecting')
      app.metrics.streamSlowDisconnects.inc()
      client.res.destroy()
    }
  }

  const drain = async () => {
    draining = true
    try {
      while (backlog.length > 0) {
        const row = backlog.shift()!
        let frame: string | undefined
        let written = 0
        for (const client of [...clients]) {
          if (!client.live || !matches(row, client.filters)) continue
          frame ??= `event: insight\nid: ${row.conversationId}\ndata: ${JSON.stringify(presentInsight(row))}\n\n`
          write(client, frame)
          if (++written % FANOUT_CHUNK === 0) await yieldToLoop()
        }
      }
    } finally {
      draining = false
    }
  }

  const fanOut = (row: InsightRow) => {
    backlog.push(row)
    if (backlog.length > MAX_FANOUT_BACKLOG) backlog.shift()
    if (!draining) void drain()
  }

  /** The one bus subscription, made on the first client, given up with the last. */
  const subscribed = async () => {
    subscription ??= app.pipeline.insights.subscribe(fanOut)
    const pending = subscription
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('subscription timed out')), config.STREAM_SUBSCRIBE_TIMEOUT_MS)
    })
    try {
      await Promise.race([pending, timeout])
    } catch (err) {
      // a subscription that failed outright is tried afresh by the next client; a slow one is kept
      pending.catch(() => {
        if (subscription === pending) subscription = undefined
      })
      app.metrics.streamRefused.inc({ reason: 'unavailable' })
      throw new AppError('UNAVAILABLE', 'live insights are unavailable; retry later', { retryAfter: STREAM_RETRY_AFTER_S, cause: err })
    } finally {
      clearTimeout(timer)
    }
  }

  const release = (client: StreamClient) => {
    if (!clients.delete(client)) return
    const left = (perOwner.get(client.owner) ?? 1) - 1
    if (left > 0) perOwner.set(client.owner, left)
    else perOwner.delete(client.owner)
    app.metrics.streamClients.dec()
    if (clients.size === 0 && subscription) {
      const last = subscription
      subscription = undefined
      last.then((unsubscribe) => unsubscribe()).catch(() => {})
    }
  }

  // streams never end on their own: close them so shutdown does not wait for clients
  app.addHook('preClose', async () => {
    for (const client of clients) client.res.end()
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
      const owner = req.apiKey ? `k:${req.apiKey.id}` : `ip:${req.ip}`
      if ((perOwner.get(owner) ?? 0) >= config.STREAM_MAX_PER_KEY) {
        app.metrics.streamRefused.inc({ reason: 'per_key_limit' })
        throw new AppError('RATE_LIMITED', `at most ${config.STREAM_MAX_PER_KEY} live streams per key`, { retryAfter: STREAM_RETRY_AFTER_S })
      }
      if (clients.size >= config.STREAM_MAX) {
        app.metrics.streamRefused.inc({ reason: 'instance_limit' })
        throw new AppError('UNAVAILABLE', 'this instance serves its maximum of live streams; retry later', { retryAfter: STREAM_RETRY_AFTER_S })
      }
      const res = reply.raw
      const client: StreamClient = { res, filters, owner, live: false }
      // the slot is taken and the close handler attached before anything awaits, so a client
      // that leaves (or a subscription that fails) always gives both back
      clients.add(client)
      perOwner.set(owner, (perOwner.get(owner) ?? 0) + 1)
      app.metrics.streamClients.inc()
      let heartbeat: NodeJS.Timeout | undefined
      const cleanup = () => {
        clearInterval(heartbeat)
        release(client)
      }
      res.on('close', cleanup)
      try {
        await subscribed()
      } catch (err) {
        cleanup()
        throw err
      }
      reply.hijack()
      if (res.destroyed) return cleanup()
      const headers = reply.getHeaders() as OutgoingHttpHeaders // security headers and x-request-id set by hooks
      res.writeHead(200, {
        ...headers,
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no'
      })
      res.write(`retry: 3000\n: connected ${req.id}\n\n`)
      client.live = true
      heartbeat = setInterval(() => write(client, ': heartbeat\n\n'), config.STREAM_HEARTBEAT_MS)
    }
  )
}

export default streamRoutes
