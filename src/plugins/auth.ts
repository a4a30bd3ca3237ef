// Bearer API keys with scopes. Each /api/v1 route names its scope in `config.scope`; routes
// without one (/health*, /metrics, /docs) are open. Keys are looked up by hash and cached
// for KEY_CACHE_TTL_MS, so auth costs no query per request and a revoke lands within it.
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { LRUCache } from 'lru-cache'
import type { Config } from '../config.ts'
import { type ApiKey, hashKey } from '../db/api-keys.ts'
import type { Scope } from '../domain.ts'
import { AppError } from '../errors.ts'

declare module 'fastify' {
  interface FastifyRequest {
    apiKey: ApiKey | null
  }
  interface FastifyContextConfig {
    scope?: Scope
  }
}

/** Client IPs whose refusals are remembered; beyond it the oldest are forgotten (memory bound). */
const AUTH_FAILURE_IPS = 10_000

const BEARER_RE = /^Bearer\s+([A-Za-z0-9_\-.~+/=]{8,200})\s*$/i

export default fp(
  async (app, opts: { config: Config }) => {
    const { config } = opts
    app.decorateRequest('apiKey', null)
    if (config.AUTH === 'off') return

    // Unknown keys are cached too (as null), so a flood of made-up keys costs one query each
    // per TTL at most; the size bound keeps that flood from growing memory.
    const cache = new LRUCache<string, { key: ApiKey | null }>({ max: 10_000, ttl: Math.max(config.KEY_CACHE_TTL_MS, 1) })
    const repo = app.repos.apiKeys

    // Refusals per client IP, counted in process: a flood of made-up keys (each a query) or of
    // requests outside a key's scope is cut off with 429 before the look-up. The rate limiter
    // cannot do this: it runs after auth, keyed by the key a refused request does not have.
    const failures = new LRUCache<string, { count: number }>({ max: AUTH_FAILURE_IPS, ttl: config.RATE_LIMIT_WINDOW_MS })
    const throttled = (req: FastifyRequest) => (failures.get(req.ip)?.count ?? 0) >= config.AUTH_FAILURES_PER_WINDOW

    const deny = (req: FastifyRequest, code: 'UNAUTHORIZED' | 'FORBIDDEN', reason: string, key?: ApiKey) => {
      const seen = failures.get(req.ip)
      if (seen) seen.count++
      else failures.set(req.ip, { count: 1 })
      // audit line: who was refused and why; never the key or the header itself
      req.log.warn(
        { audit: 'auth_denied', reason, key_id: key?.id, key_prefix: key?.prefix, route: req.routeOptions.url, ip: req.ip },
        'request refused'
      )
      return new AppError(code, code === 'UNAUTHORIZED' ? 'a valid API key is required (Authorization: Bearer <key>)' : reason)
    }

    app.addHook('onRequest', async (req) => {
      const scope = req.routeOptions.config.scope
      if (!scope) return
      if (throttled(req)) {
        throw new AppError('RATE_LIMITED', 'too many refused requests from this address; retry later', {
          retryAfter: Math.ceil((failures.getRemainingTTL(req.ip) || config.RATE_LIMIT_WINDOW_MS) / 1000)
        })
      }
      const m = BEARER_RE.exec(req.headers.authorization ?? '')
      if (!m) throw deny(req, 'UNAUTHORIZED', 'missing or malformed authorization header')
      const hash = hashKey(m[1]!)
      let entry = cache.get(hash)
      if (!entry) {
        entry = { key: await repo.findActiveByHash(hash) }
        cache.set(hash, entry)
      }
      if (!entry.key) throw deny(req, 'UNAUTHORIZED', 'unknown or revoked key')
      if (!entry.key.scopes.includes(scope)) throw deny(req, 'FORBIDDEN', `this key lacks the ${scope} scope`, entry.key)
      req.apiKey = entry.key
    })
  },
  { name: 'auth', dependencies: ['database'] }
)
