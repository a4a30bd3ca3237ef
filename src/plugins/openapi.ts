// OpenAPI generated from the route schemas (the source of truth), at /docs/json, with a UI
// at /docs. Registered before the routes so it sees each of them.
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'

export default fp(
  async (app, opts: { version: string }) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Gleaner',
          version: opts.version,
          description: 'Turns a stream of conversations into insights. The contract, with what every field means: docs/api.md in the repository.'
        },
        tags: [
          { name: 'producers', description: 'ingest (scope ingest)' },
          { name: 'analysts', description: 'reads (scope read)' },
          { name: 'admin', description: 'usage and dead letters (scope admin)' },
          { name: 'operators', description: 'health; /metrics is Prometheus text' }
        ],
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'gln_… API key' } } },
        security: [{ bearer: [] }]
      }
    })
    // the UI is a page: it brings its own CSP for its static files instead of the API's 'none'
    await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true, uiConfig: { docExpansion: 'list' } })
  },
  { name: 'openapi' }
)
