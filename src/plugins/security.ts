// Security headers for a JSON API: helmet's defaults with a CSP that allows nothing to load,
// since no API response is a page (the /docs UI and the /console pages relax it for
// themselves, see src/routes/console.ts). CORS is opt-in.
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import fp from 'fastify-plugin'
import type { Config } from '../config.ts'

export default fp(
  async (app, opts: { config: Config }) => {
    // CORS stays off (no Access-Control-* headers) unless origins are named: producers and
    // analysts are servers, not browsers, by default
    const origins = opts.config.CORS_ORIGIN.split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    if (origins.length) await app.register(cors, { origin: origins, methods: ['GET', 'POST'], maxAge: 600 })
    await app.register(helmet, {
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] }
      },
      crossOriginResourcePolicy: { policy: 'same-origin' }
    })
  },
  { name: 'security' }
)
