// HTTP metrics and the /metrics endpoint. The metric definitions live in src/metrics.ts.
import { timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'
import { AppError } from '../errors.ts'
import { createMetrics, type Metrics } from '../metrics.ts'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export default fp(
  async (app, opts: { config: Config }) => {
    const metrics = createMetrics()
    app.decorate('metrics', metrics)

    app.addHook('onResponse', async (req, reply) => {
      // the route template, never the raw URL: ids and junk paths must not become labels
      const route = req.routeOptions.url ?? 'unmatched'
      if (route === '/metrics') return
      metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) })
      metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000)
    })

    const expected = opts.config.METRICS_API_KEY ? Buffer.from(opts.config.METRICS_API_KEY) : null
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
  },
  { name: 'metrics' }
)
