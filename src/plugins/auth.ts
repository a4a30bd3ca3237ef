// Bearer API keys with scopes. Each /api/v1 route names its scope in `config.scope`; routes
// without one (/health*, /metrics, /docs) are open. Keys are looked up by hash and cached
// for KEY_CACHE_TTL_MS, so auth costs no query per request and a revoke lands within it.
// Refusals are counted per client IP in the shared store (Redis with REDIS_URL), so every
// instance throttles an address once all of them together refused it enough.
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { LRUCache } from 'lru-cache'
import type { Config } from '../config.ts'
import { type ApiKey, hashKey } from '../db/api-keys.ts'
import type { Scope } from '../domain.ts'
import { AppError } from '../errors.ts'
import { failoverCounter, localCounter } from '../rate-limit-store.ts'

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

    // Refusals per client IP: a flood of made-up keys (each a query) or of requests outside a
    // key's scope is cut off with 429 before the look-up. The rate limiter cannot do this: it
    // runs after auth, keyed by the key a refused request does not have. Only refusals are
    // counted in the shared store; the check before each look-up reads `throttledUntil`, this
    // process's memory of what the store answered, so an accepted request costs no round trip.
    // The price: another instance learns of the throttle only at its next refusal from that
    // address, which is answered 429 (the shared count is over) but cost it one key look-up.
    const refusals = app.sharedStore ? failoverCounter({ ...app.sharedStore, nameSpace: 'gleaner-auth:' }) : localCounter(AUTH_FAILURE_IPS)
    const throttledUntil = new LRUCache<string, number>({ max: AUTH_FAILURE_IPS })
    const throttledFor = (ip: string) => Math.max(0, (throttledUntil.get(ip) ?? 0) - Date.now())
    const tooMany = (ms: number) =>
      new AppError('RATE_LIMITED', 'too many refused requests from this address; retry later', { retryAfter: Math.ceil(ms / 1000) })

    const deny = async (req: FastifyRequest, code: 'UNAUTHORIZED' | 'FORBIDDEN', reason: string, key?: ApiKey) => {
      // audit line: who was refused and why; never the key or the header itself
      req.log.warn(
        { audit: 'auth_denied', reason, key_id: key?.id, key_prefix: key?.prefix, route: req.routeOptions.url, ip: req.ip },
        'request refused'
      )
      // with RATE_LIMIT_ON_STORE_ERROR=closed a refusal that cannot be counted throws 503 here
      const { current, ttl } = await refusals.incr(req.ip, config.RATE_LIMIT_WINDOW_MS, config.AUTH_FAILURES_PER_WINDOW)
      if (current >= config.AUTH_FAILURES_PER_WINDOW) {
        const window = ttl > 0 ? ttl : config.RATE_LIMIT_WINDOW_MS
        throttledUntil.set(req.ip, Date.now() + window, { ttl: window })
        // over the limit already (other instances' refusals): this one is throttled too
        if (current > config.AUTH_FAILURES_PER_WINDOW) return tooMany(window)
      }
      return new AppError(code, code === 'UNAUTHORIZED' ? 'a valid API key is required (Authorization: Bearer <key>)' : reason)
    }

    app.addHook('onRequest', async (req) => {
      const scope = req.routeOptions.config.scope
      if (!scope) return
      const throttled = throttledFor(req.ip)
      if (throttled > 0) throw tooMany(throttled)
      const m = BEARER_RE.exec(req.headers.authorization ?? '')
      if (!m) throw await deny(req, 'UNAUTHORIZED', 'missing or malformed authorization header')
      const hash = hashKey(m[1]!)
      let entry = cache.get(hash)
      if (!entry) {
        entry = { key: await repo.findActiveByHash(hash) }
        cache.set(hash, entry)
      }
      if (!entry.key) throw await deny(req, 'UNAUTHORIZED', 'unknown or revoked key')
      if (!entry.key.scopes.includes(scope)) throw await deny(req, 'FORBIDDEN', `this key lacks the ${scope} scope`, entry.key)
      req.apiKey = entry.key
    })
  },
  // app.metrics (the store's fallback counter) is read at request time only
  { name: 'auth', dependencies: ['database', 'shared-store'] }
)
