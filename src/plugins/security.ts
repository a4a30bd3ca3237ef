// Security headers for a JSON API: helmet's defaults with a CSP that allows nothing to load,
// since no API response is a page (the /docs UI and the /console pages relax it for
// themselves, see src/routes/console.ts). CORS is opt-in.
//
// Why helmet itself and not @fastify/helmet: the plugin calls helmet(options) on every
// request, which re-validates and re-serialises the policy: 9% of a single POST's CPU in a
// profile. Our policies are constants (no nonces), so helmet computes each header set once,
// at start-up, and one synchronous hook copies it onto every reply. Same library, same
// headers, computed once.
import type { IncomingMessage, ServerResponse } from 'node:http'
import cors from '@fastify/cors'
import fp from 'fastify-plugin'
import helmet, { type HelmetOptions } from 'helmet'
import type { Config } from '../config.ts'

type Directives = Record<string, string[]>

/** The API's policy: nothing may load, nothing may frame it. */
export const API_CSP: Directives = { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] }

/** The headers helmet would set for this CSP, computed once. */
export function securityHeaders(directives: Directives): Readonly<Record<string, string>> {
  const options: HelmetOptions = {
    contentSecurityPolicy: { useDefaults: false, directives },
    crossOriginResourcePolicy: { policy: 'same-origin' }
  }
  const headers: Record<string, string> = {}
  // helmet is connect middleware: it only calls setHeader/removeHeader, synchronously
  const res = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers[name.toLowerCase()] = String(value)
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()]
    }
  }
  let failed: unknown
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, (err?: unknown) => {
    failed = err
  })
  if (failed) throw failed
  return Object.freeze(headers)
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** a route's own security headers (a page's CSP) instead of the API's */
    securityHeaders?: Readonly<Record<string, string>>
  }
}

export default fp(
  async (app, opts: { config: Config }) => {
    // CORS stays off (no Access-Control-* headers) unless origins are named: producers and
    // analysts are servers, not browsers, by default
    const origins = opts.config.CORS_ORIGIN.split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    if (origins.length) await app.register(cors, { origin: origins, methods: ['GET', 'POST'], maxAge: 600 })
    const api = securityHeaders(API_CSP)
    app.addHook('onRequest', (request, reply, done) => {
      reply.headers(request.routeOptions.config.securityHeaders ?? api)
      done()
    })
  },
  { name: 'security' }
)
