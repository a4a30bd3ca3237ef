// The analyst's console at /console: static files (src/console/, plain ES modules, no build
// step) and the two browser libraries it uses, served from their npm packages so they come
// from our origin and update with npm. The page's data comes from the API with the key the
// analyst pastes; the files themselves are public, like /docs.
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import { securityHeaders } from '../plugins/security.ts'

export const CONSOLE_PREFIX = '/console'
const CONSOLE_ROOT = fileURLToPath(new URL('../console', import.meta.url))

const require = createRequire(import.meta.url)
/** Each library's dist folder, and the only files of it the browser may fetch. */
const VENDOR: { name: string; dir: string; files: ReadonlySet<string> }[] = [
  { name: 'uplot', dir: dirname(require.resolve('uplot')), files: new Set(['/uPlot.esm.js', '/uPlot.min.css']) },
  { name: 'eventsource-parser', dir: dirname(require.resolve('eventsource-parser')), files: new Set(['/index.js', '/stream.js']) }
]

/**
 * The console's CSP: everything from our origin, nothing inline, nothing from elsewhere.
 * The API keeps its own policy (default-src 'none'); only these routes get this one.
 */
export const CONSOLE_CSP = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'"],
  connectSrc: ["'self'"],
  manifestSrc: ["'self'"],
  baseUri: ["'none'"],
  formAction: ["'none'"],
  frameAncestors: ["'none'"]
}

const consoleRoutes: FastifyPluginAsync = async (app) => {
  // the console's pages get their own CSP: set on every route this plugin adds, so the
  // relaxed policy cannot reach a route outside it
  const headers = securityHeaders(CONSOLE_CSP)
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, securityHeaders: headers }
  })
  const common = { decorateReply: false, schemaHide: true, dotfiles: 'deny', index: false } as const
  for (const v of VENDOR) {
    await app.register(fastifyStatic, {
      ...common,
      root: v.dir,
      prefix: `${CONSOLE_PREFIX}/vendor/${v.name}/`,
      allowedPath: (path) => v.files.has(path)
    })
  }
  // /console redirects to /console/, which serves index.html
  await app.register(fastifyStatic, { ...common, root: CONSOLE_ROOT, prefix: CONSOLE_PREFIX, redirect: true, index: ['index.html'] })
}

export default consoleRoutes
