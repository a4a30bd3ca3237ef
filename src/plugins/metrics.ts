// HTTP metrics, and the /metrics endpoint. The metric definitions live in src/metrics.ts.
// The endpoint is a plugin of its own: buildApp registers it among the routes (after the
// error handler, so a refused scrape gets the contract's error body) unless METRICS_PORT is
// set; then only the metrics listener (src/metrics-server.ts) serves it.
import { timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { AppError } from '../errors.ts'
import { createMetrics, type Metrics } from '../metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/** GET /metrics from `metrics`, behind METRICS_API_KEY when set: the same on either port. */
export const metricsEndpoint: FastifyPluginAsync<{ metrics: Metrics; config: Config }> = async (app, { metrics, config }) => {
  const expected = config.METRICS_API_KEY ? Buffer.from(config.METRICS_API_KEY) : null
  app.get('/metrics', async (req, reply) => {
    if (expected) {
      const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''))
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new AppError('UNAUTHORIZED', 'a valid metrics key is required')
      }
    }
    reply.header('content-type', metrics.registry.contentType)
    return metrics.registry.metrics()
  })
}

export default fp(
  async (app) => {
    const metrics = createMetrics()
    app.decorate('metrics', metrics)

    app.addHook('onResponse', async (req, reply) => {
      // the route template, never the raw URL: ids and junk paths must not become labels
      const route = req.routeOptions.url ?? 'unmatched'
      if (route === '/metrics') return
      metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) })
      metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000)
    })
  },
  { name: 'metrics' }
)
