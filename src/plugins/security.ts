// Security headers for a JSON API: helmet's defaults with a CSP that allows nothing to load,
// since no response of ours is a page (the /docs UI, when enabled, relaxes it for itself).
import helmet from '@fastify/helmet'
import fp from 'fastify-plugin'

export default fp(
  async (app) => {
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
