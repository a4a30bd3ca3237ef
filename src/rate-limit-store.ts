// The rate-limit store: Redis shared by every instance, with a stated policy for when Redis
// fails. Before, a hung Redis hung every keyed request and a dead one let every request
// through unlimited after a ~4 s wait. Now each count has a deadline (REDIS_COMMAND_TIMEOUT_MS);
// on failure the policy decides (local: an in-process limiter at the same limits; open: no
// limit; closed: 503), and Redis is left alone for REDIS_RETRY_MS so a hung server costs one
// timeout per interval, not one per request. The state is reported by /health and a metric.
// Two users count here: @fastify/rate-limit (as its `store`) and the auth-failure throttle
// (as a WindowCounter), each under its own key prefix, sharing one client and one state.
import { createRequire } from 'node:module'
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import { AppError } from './errors.ts'

export type StoreErrorPolicy = 'local' | 'open' | 'closed'

export type Counted = { current: number; ttl: number }
type Callback = (err: Error | null, res?: Counted) => void
interface Store {
  incr(key: string, cb: Callback, timeWindow: number, max: number): void
  child(routeOptions: unknown): Store
}
type StoreClass = new (...args: unknown[]) => Store

// @fastify/rate-limit's own stores (CommonJS, untyped): its Lua script and its LRU, reused
const require = createRequire(import.meta.url)
const RedisStore: StoreClass = require('@fastify/rate-limit/store/RedisStore.js')
const LocalStore: StoreClass = require('@fastify/rate-limit/store/LocalStore.js')
/** Keys the in-process fallback remembers: @fastify/rate-limit's default LRU size. */
const LOCAL_CACHE_KEYS = 5_000

/** A fixed-window count per key: `current` in the window, `ttl` ms until it ends. */
export interface WindowCounter {
  incr(key: string, timeWindow: number, max: number): Promise<Counted>
}

const counterOf = (store: Store): WindowCounter => ({
  incr: (key, timeWindow, max) =>
    new Promise((resolve, reject) => store.incr(key, (err, res) => (err ? reject(err) : resolve(res!)), timeWindow, max))
})

/** An in-process counter remembering at most `keys` keys (the oldest are forgotten). */
export function localCounter(keys: number): WindowCounter {
  return counterOf(new LocalStore(false, false, keys))
}

/** What /health and the metrics read: whether Redis is being bypassed, and why. */
export class RateLimitStoreState {
  degradedReason: string | null = null
  degradedSince: Date | null = null
  /** until then counts skip Redis and go straight to the policy */
  bypassUntil = 0
  constructor(
    readonly policy: StoreErrorPolicy,
    private readonly onChange: (degraded: boolean) => void = () => {}
  ) {}

  failed(err: Error, now: number, retryMs: number) {
    this.bypassUntil = now + retryMs
    if (this.degradedReason === null) {
      this.degradedSince = new Date(now)
      this.onChange(true)
    }
    this.degradedReason = `redis: ${err.message}`.slice(0, 200)
  }

  recovered() {
    if (this.degradedReason === null) return
    this.degradedReason = null
    this.degradedSince = null
    this.onChange(false)
  }
}

export interface FailoverStoreOptions {
  redis: Redis
  nameSpace: string
  state: RateLimitStoreState
  retryMs: number
  onFallback: (policy: StoreErrorPolicy) => void
  now?: () => number
}

function failoverStoreClass(opts: FailoverStoreOptions) {
  const now = opts.now ?? Date.now
  const unavailable = () => new AppError('UNAVAILABLE', 'rate limiting is unavailable; retry later', { retryAfter: Math.ceil(opts.retryMs / 1000) })

  class FailoverStore implements Store {
    constructor(
      private readonly shared: Store,
      private readonly local: Store
    ) {}

    static create(params: { continueExceeding?: boolean; exponentialBackoff?: boolean }) {
      return new FailoverStore(
        new RedisStore(params.continueExceeding, params.exponentialBackoff, opts.redis, opts.nameSpace),
        new LocalStore(params.continueExceeding, params.exponentialBackoff, LOCAL_CACHE_KEYS)
      )
    }

    incr(key: string, cb: Callback, timeWindow: number, max: number) {
      if (now() < opts.state.bypassUntil) return this.fallback(key, cb, timeWindow, max)
      this.shared.incr(
        key,
        (err, res) => {
          if (!err) {
            opts.state.recovered()
            return cb(null, res)
          }
          opts.state.failed(err, now(), opts.retryMs)
          this.fallback(key, cb, timeWindow, max)
        },
        timeWindow,
        max
      )
    }

    private fallback(key: string, cb: Callback, timeWindow: number, max: number) {
      opts.onFallback(opts.state.policy)
      if (opts.state.policy === 'local') return this.local.incr(key, cb, timeWindow, max)
      if (opts.state.policy === 'open') return cb(null, { current: 0, ttl: timeWindow })
      cb(unavailable())
    }

    child(routeOptions: unknown) {
      return new FailoverStore(this.shared.child(routeOptions), this.local.child(routeOptions))
    }
  }

  return FailoverStore
}

/** A store class for @fastify/rate-limit's `store` option (it calls `new Store(globalParams)`). */
export function failoverStore(opts: FailoverStoreOptions) {
  const FailoverStore = failoverStoreClass(opts)
  // the plugin constructs the store itself with its global parameters
  return function Store(params: { continueExceeding?: boolean; exponentialBackoff?: boolean }) {
    return FailoverStore.create(params)
  } as unknown as FastifyRateLimitStoreCtor
}

/** The same Redis, state and policy as a plain counter, for counts that are not requests. */
export function failoverCounter(opts: FailoverStoreOptions): WindowCounter {
  return counterOf(failoverStoreClass(opts).create({}))
}
