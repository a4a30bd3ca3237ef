// The model transport: HTTP to one OpenAI-compatible endpoint. One attempt at a time
// (classified: an answer, a failure worth retrying, a refusal), the back-off between
// attempts, the readiness ping, and the redaction of secrets from everything it says.
// It knows nothing of prompts or insights, so another endpoint (a fallback provider) is
// another transport, and the analyzer above decides what to send and how often.
import { setTimeout as sleepFor } from 'node:timers/promises'
import { type Dispatcher, Pool } from 'undici'
import type { Config } from '../config.ts'
import { ModelCallError, type ModelFailureKind } from './analyzer.ts'

/** An answer larger than this is not an insight list; undici stops reading it. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024
/** ping is a readiness probe: it must answer fast or say the backend is down. */
export const PING_TIMEOUT_MS = 2_000
/** Provider error text kept in a rejection message: enough to explain it, not to flood logs. */
const MAX_DETAIL_CHARS = 200

export type Attempt =
  | { type: 'answer'; status: number; text: string; ms: number }
  | { type: 'retryable'; kind: Exclude<ModelFailureKind, 'rejected'>; status?: number; message: string; retryAfterMs?: number; ms: number }
  | { type: 'rejected'; status: number; message: string; ms: number }

/** Time, injectable: tests check a back-off was honoured without waiting for it. */
export interface TransportClock {
  sleep(ms: number, signal: AbortSignal): Promise<void>
  /** in [0, 1), for the jitter */
  random(): number
}

export const realClock: TransportClock = {
  sleep: (ms, signal) => sleepFor(ms, undefined, { signal }),
  random: Math.random
}

export interface ModelTransport {
  /** One chat completion request; never throws except when the caller aborts or the transport closes. */
  attempt(body: string, signal: AbortSignal | undefined): Promise<Attempt>
  /** Wait before retry number `retry` (0-based): a Retry-After is honoured, capped; otherwise full jitter. */
  backoffMs(retry: number, retryAfterMs: number | undefined): number
  /** Sleeps `ms` unless the caller aborts (throws its reason) or the transport closes (ModelCallError). */
  pause(ms: number, signal: AbortSignal | undefined): Promise<void>
  /** Readiness: resolves when GET /models answers 2xx within PING_TIMEOUT_MS. */
  ping(signal?: AbortSignal): Promise<void>
  /** Every string leaving the model client that may carry provider or socket text goes through here. */
  redact(text: string): string
  close(): Promise<void>
}

export function createModelTransport(config: Config, clock: TransportClock = realClock): ModelTransport {
  if (!config.MODEL_BASE_URL) throw new Error('MODEL_BASE_URL is required for the openai-compatible analyzer')
  const base = new URL(config.MODEL_BASE_URL)
  const basePath = base.pathname.replace(/\/+$/, '')
  const chatPath = `${basePath}/chat/completions`
  const modelsPath = `${basePath}/models`

  const apiKey = config.MODEL_API_KEY ? config.MODEL_API_KEY : undefined
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
  if (apiKey) headers.authorization = `Bearer ${apiKey}`
  const redact = (s: string) => {
    // Providers quote a refused key in part ("Incorrect API key provided: sk-…abcd"); mask key-like tokens too.
    const masked = s.replace(/Bearer\s+\S+/gi, 'Bearer [redacted]').replace(/\b(?:sk|xai|gsk|key)[-_][\w*.-]{4,}/gi, '[redacted]')
    return apiKey ? masked.split(apiKey).join('[redacted]') : masked
  }

  const pool = new Pool(base.origin, {
    connections: config.MODEL_MAX_CONNECTIONS,
    maxResponseSize: MAX_RESPONSE_BYTES
  })
  // Aborts in-flight calls and back-off sleeps on close(); the worker has stopped waiting by then.
  const closing = new AbortController()
  let closed: Promise<void> | undefined

  async function attempt(body: string, callerSignal: AbortSignal | undefined): Promise<Attempt> {
    const link = linkSignals([closing.signal, callerSignal], config.MODEL_TIMEOUT_MS)
    const { signal } = link
    const started = performance.now()
    const ms = () => Math.round(performance.now() - started)
    let res: Dispatcher.ResponseData | undefined
    try {
      res = await pool.request({ method: 'POST', path: chatPath, headers, body, signal })
      const status = res.statusCode
      if (status >= 200 && status < 300) return { type: 'answer', status, text: await res.body.text(), ms: ms() }
      const retryAfterMs = parseRetryAfter(res.headers)
      // 408 and 409 are the provider's own transient states; other 4xx will not change on retry.
      if (status === 429 || status >= 500 || status === 408 || status === 409) {
        await res.body.dump()
        return status === 429
          ? { type: 'retryable', kind: 'rate_limited', status, message: 'rate limited (429)', retryAfterMs, ms: ms() }
          : { type: 'retryable', kind: 'error', status, message: `model endpoint answered ${status}`, retryAfterMs, ms: ms() }
      }
      const detail = await readErrorDetail(res.body, redact)
      return { type: 'rejected', status, message: redact(`model endpoint refused the request (${status})${detail ? `: ${detail}` : ''}`), ms: ms() }
    } catch (err) {
      if (res && !res.body.destroyed) res.body.destroy()
      if (callerSignal?.aborted) throw callerSignal.reason
      if (closing.signal.aborted) throw new ModelCallError('error', 'the model client was closed')
      if (link.timedOut()) return { type: 'retryable', kind: 'timeout', message: `no answer within ${config.MODEL_TIMEOUT_MS} ms`, ms: ms() }
      // undici's messages can quote the request; keep only the error code.
      const code = (err as { code?: unknown }).code
      return { type: 'retryable', kind: 'error', message: `network error${typeof code === 'string' ? ` (${redact(code)})` : ''}`, ms: ms() }
    } finally {
      link.dispose()
    }
  }

  function backoffMs(retry: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, config.MODEL_RETRY_MAX_MS)
    // Full jitter (AWS architecture blog): spreads the retries of many workers hit by the same outage.
    return clock.random() * Math.min(config.MODEL_RETRY_MAX_MS, config.MODEL_RETRY_BASE_MS * 2 ** retry)
  }

  async function pause(ms: number, callerSignal: AbortSignal | undefined) {
    if (ms <= 0) return
    const link = linkSignals([closing.signal, callerSignal])
    try {
      await clock.sleep(ms, link.signal)
    } catch {
      if (callerSignal?.aborted) throw callerSignal.reason
      throw new ModelCallError('error', 'the model client was closed')
    } finally {
      link.dispose()
    }
  }

  async function ping(signal?: AbortSignal): Promise<void> {
    const link = linkSignals([closing.signal, signal], PING_TIMEOUT_MS)
    let status: number
    try {
      const res = await pool.request({ method: 'GET', path: modelsPath, headers, signal: link.signal })
      status = res.statusCode
      await res.body.dump()
    } catch (err) {
      if (signal?.aborted) throw signal.reason
      if (link.timedOut()) throw new ModelCallError('timeout', `model endpoint did not answer within ${PING_TIMEOUT_MS} ms`)
      const code = (err as { code?: unknown }).code
      throw new ModelCallError('error', `model endpoint unreachable${typeof code === 'string' ? ` (${redact(code)})` : ''}`)
    } finally {
      link.dispose()
    }
    if (status === 429) throw new ModelCallError('rate_limited', 'model endpoint answered 429')
    if (status >= 500) throw new ModelCallError('error', `model endpoint answered ${status}`)
    if (status >= 400) throw new ModelCallError('rejected', `model endpoint answered ${status}`)
  }

  return {
    attempt,
    backoffMs,
    pause,
    ping,
    redact,
    close() {
      closed ??= (async () => {
        closing.abort()
        await pool.close()
      })()
      return closed
    }
  }
}

/** Provider error text, for rejections only; reading it also frees the connection. */
async function readErrorDetail(body: Dispatcher.ResponseData['body'], redact: (s: string) => string): Promise<string> {
  let text: string
  try {
    text = await body.text()
  } catch {
    return ''
  }
  let message: unknown = text
  try {
    const json = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown }
    message = typeof json.error === 'string' ? json.error : (json.error?.message ?? json.message ?? text)
  } catch {
    // not JSON: keep the raw text
  }
  return typeof message === 'string' ? redact(message.replace(/\s+/g, ' ').trim().slice(0, MAX_DETAIL_CHARS)) : ''
}

/** Retry-After in ms: delta-seconds or an HTTP date (RFC 9110), or the retry-after-ms some providers send. */
export function parseRetryAfter(headers: Record<string, string | string[] | undefined>, now = Date.now()): number | undefined {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)
  const ms = first(headers['retry-after-ms'])
  if (ms && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Math.round(Number(ms))
  const value = first(headers['retry-after'])
  if (!value) return undefined
  if (/^\s*\d+(\.\d+)?\s*$/.test(value)) return Math.round(Number(value) * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/**
 * A signal that aborts when any of `signals` does, or after `timeoutMs`; dispose() unlinks it.
 * Hand-written instead of AbortSignal.any + AbortSignal.timeout: on Node 20, AbortSignal.any
 * keeps every combined signal reachable from a long-lived input (nodejs/node#55351), and
 * both our close signal and a worker's shutdown signal live as long as the process, so
 * one leaked signal per model call would add up over millions of calls.
 */
export function linkSignals(
  signals: Array<AbortSignal | undefined>,
  timeoutMs?: number
): { signal: AbortSignal; timedOut(): boolean; dispose(): void } {
  const controller = new AbortController()
  const unlink: Array<() => void> = []
  let timedOut = false
  for (const s of signals) {
    if (!s) continue
    if (s.aborted) {
      controller.abort(s.reason)
      break
    }
    const onAbort = () => controller.abort(s.reason)
    s.addEventListener('abort', onAbort, { once: true })
    unlink.push(() => s.removeEventListener('abort', onAbort))
  }
  if (timeoutMs !== undefined && !controller.signal.aborted) {
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError'))
    }, timeoutMs)
    unlink.push(() => clearTimeout(timer))
  }
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    dispose() {
      for (const fn of unlink.splice(0)) fn()
    }
  }
}
