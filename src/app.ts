// buildApp: the one app factory, shared by the server and the tests. It owns every Fastify
// option, registers external plugins, then the app's own plugins, then the routes, then
// the error and not-found handlers. Nothing listens here.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController } from 'fastify'
import type { Logger } from 'pino'
import type { Analyzer } from './analyzers/analyzer.ts'
import type { Config } from './config.ts'
import { type Database, openDatabase } from './db/client.ts'
import { AppError, type ErrorCode } from './errors.ts'
import { createLogger } from './logger.ts'
import authPlugin from './plugins/auth.ts'
import databasePlugin from './plugins/database.ts'
import errorsPlugin, { sendError, toAppError } from './plugins/errors.ts'
import jsonBodyPlugin from './plugins/json-body.ts'
import maintenancePlugin from './plugins/maintenance.ts'
import metricsPlugin, { metricsEndpoint } from './plugins/metrics.ts'
import openapiPlugin from './plugins/openapi.ts'
import pipelinePlugin from './plugins/pipeline.ts'
import quotasPlugin from './plugins/quotas.ts'
import rateLimitPlugin from './plugins/rate-limit.ts'
import securityPlugin from './plugins/security.ts'
import sharedStorePlugin from './plugins/shared-store.ts'
import adminRoutes from './routes/admin.ts'
import consoleRoutes from './routes/console.ts'
import conversationsRoutes from './routes/conversations.ts'
import erasureRoutes from './routes/erasure.ts'
import exportRoutes from './routes/export.ts'
import healthRoutes from './routes/health.ts'
import insightsRoutes from './routes/insights.ts'
import keysRoutes from './routes/keys.ts'
import streamRoutes from './routes/stream.ts'
import taxonomyRoutes from './routes/taxonomy.ts'
import { createBodyAjv, createQueryAjv } from './validation.ts'

export const VERSION: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version

export interface AppDeps {
  logger?: Logger
  /** an already-open database (tests share one PGlite across apps); the caller closes it */
  database?: Database
  /** how to open the database when none is given (tests slow it down to prove a slow start) */
  openDatabase?: typeof openDatabase
  analyzer?: Analyzer
  /** the clock of database upkeep (partitions ahead, retention): tests move it months on */
  now?: () => number
}

// A well-formed incoming id is reused so a request can be followed across services.
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/

/** How often Node looks for requests past REQUEST_TIMEOUT_MS: the precision of the cut. */
const REQUEST_TIMEOUT_CHECK_MS = 1_000

const CLIENT_ERRORS: Record<string, [number, ErrorCode, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'REQUEST_TIMEOUT', 'the request did not arrive in time'],
  HPE_HEADER_OVERFLOW: [431, 'HEADERS_TOO_LARGE', 'request headers are too large']
}

/**
 * Errors Node's HTTP parser raises before Fastify sees a request. Fastify's default answers
 * them with its own body shape; these answer in the contract's, with a fresh request id.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, code, message] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'BAD_REQUEST', 'malformed HTTP request']
  const requestId = randomUUID()
  const payload = JSON.stringify({ error: { code, message }, request_id: requestId })
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(payload)}\r\nx-request-id: ${requestId}\r\nConnection: close\r\n\r\n${payload}`
    )
  }
  socket.destroy()
}

function trustProxy(value: string): boolean | string[] {
  if (value === 'true') return true
  if (value === 'false' || value === '') return false
  // a hop count: Fastify accepts a number here although its types do not say so
  if (/^\d+$/.test(value)) return Number(value) as unknown as boolean
  return value.split(',').map((s) => s.trim())
}

export async function buildApp(config: Config, deps: AppDeps = {}) {
  const logger = deps.logger ?? createLogger(config)
  const app = Fastify({
    loggerInstance: logger,
    // one line per request from onResponse below, not two
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID()
    },
    bodyLimit: config.BODY_LIMIT_BYTES,
    trustProxy: trustProxy(config.TRUST_PROXY),
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    // Node cuts a request at requestTimeout only once headersTimeout (60 s by default) has
    // passed too, and looks every 30 s: a slow body lived 77 s against 30 s. Headers get the
    // same deadline, looked at every second.
    http: { connectionsCheckingInterval: REQUEST_TIMEOUT_CHECK_MS, headersTimeout: config.REQUEST_TIMEOUT_MS },
    // Node's own refusals (malformed request, header overflow, timeout) in the contract's shape
    clientErrorHandler: answerClientError,
    // above common load balancers' 60 s idle timeout, so the balancer closes first
    keepAliveTimeout: 72_000,
    return503OnClosing: true,
    // avvio's 10 s per plugin is too short for PGlite plus migrations on a busy small machine
    pluginTimeout: config.PLUGIN_TIMEOUT_MS,
    // bad URLs and over-long path parameters fail before routing: answer them in the contract's shape too
    frameworkErrors: (err, req, reply) => sendError(req, reply, toAppError(err))
  }).withTypeProvider<TypeBoxTypeProvider>()

  // Bodies: exact types, unknown fields rejected. Query strings: coerced from text.
  const bodyAjv = createBodyAjv()
  const queryAjv = createQueryAjv()
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? bodyAjv.compile(schema) : queryAjv.compile(schema)
  )
  // JSON only: a text/plain body is a 415, not a string handed to a schema
  app.removeContentTypeParser('text/plain')
  await app.register(jsonBodyPlugin, { config })

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id)
    // PostgreSQL cannot hold NUL in text: a filter with one would fail as a 500 at the query
    const query = req.url.indexOf('?')
    if (query !== -1 && req.url.indexOf('%00', query) !== -1) throw new AppError('BAD_REQUEST', 'query strings must not contain NUL characters')
  })
  const logRequests = logger.isLevelEnabled('info') // checked once: no per-request cost when off
  if (logRequests) app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      'request done'
    )
  })

  // external plugins and resources, in close order: database closes last
  await app.register(securityPlugin, { config })
  await app.register(databasePlugin, { config, logger, database: deps.database, open: deps.openDatabase ?? openDatabase })
  await app.register(maintenancePlugin, { config, logger, now: deps.now })
  // auth's onRequest hook runs before the limiter's, so limits are keyed by API key; both come
  // before any route (the limiter applies to routes added after it: /metrics and /docs too),
  // and both count in the shared store (Redis), which therefore comes first
  await app.register(sharedStorePlugin, { config, logger })
  await app.register(authPlugin, { config })
  await app.register(rateLimitPlugin, { config })
  await app.register(openapiPlugin, { version: VERSION })
  await app.register(metricsPlugin)
  await app.register(pipelinePlugin, { config, logger, analyzer: deps.analyzer })
  await app.register(errorsPlugin)
  await app.register(quotasPlugin, { config })

  // routes
  await app.register(healthRoutes, { config, version: VERSION })
  await app.register(conversationsRoutes, { config })
  await app.register(insightsRoutes)
  await app.register(exportRoutes)
  await app.register(taxonomyRoutes)
  await app.register(streamRoutes, { config })
  await app.register(adminRoutes)
  await app.register(erasureRoutes)
  await app.register(keysRoutes)
  await app.register(consoleRoutes)
  // with METRICS_PORT, /metrics is served by the metrics listener only (src/metrics-server.ts)
  if (config.METRICS_PORT === undefined) await app.register(metricsEndpoint, { metrics: app.metrics, config })

  await app.ready()
  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
