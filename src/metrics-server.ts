// The metrics listener: with METRICS_PORT, /metrics leaves the public port for a small server
// of its own that serves nothing else, so operators can expose the API and keep metrics on
// an internal port. It reads the app's registry (one per app: the figures are the app's).
// Built here, shared by src/server.ts (which alone listens) and the tests, like buildApp.
import { randomUUID } from 'node:crypto'
import rateLimit from '@fastify/rate-limit'
import Fastify, { LogController } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from './config.ts'
import type { Metrics } from './metrics.ts'
import errorsPlugin from './plugins/errors.ts'
import { metricsEndpoint } from './plugins/metrics.ts'

/** A scrape is a GET: no body is ever needed. */
const METRICS_BODY_LIMIT_BYTES = 1_024

export async function buildMetricsServer(metrics: Metrics, config: Config, logger: Logger) {
  const server = Fastify({
    loggerInstance: logger.child({ component: 'metrics-server' }),
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: () => randomUUID(),
    bodyLimit: METRICS_BODY_LIMIT_BYTES,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: { headersTimeout: config.REQUEST_TIMEOUT_MS },
    return503OnClosing: true
  })
  // errors and unknown paths in the contract's shape, as on the main port
  await server.register(errorsPlugin)
  // in process, per client IP, as the main port limits anonymous clients: scrapers need a few
  // requests a minute, and this port must not become a way to load the instance
  await server.register(rateLimit, { global: true, max: config.RATE_LIMIT_ANONYMOUS, timeWindow: config.RATE_LIMIT_WINDOW_MS })
  await server.register(metricsEndpoint, { metrics, config })
  await server.ready()
  return server
}

export type MetricsServer = Awaited<ReturnType<typeof buildMetricsServer>>
