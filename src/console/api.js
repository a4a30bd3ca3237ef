// The API as the console uses it: the key from session storage in an Authorization header
// (never in a URL), the contract's error body turned into an ApiError with a message an
// analyst can act on.

const KEY_STORAGE = 'gleaner.apiKey'

export const storedKey = () => sessionStorage.getItem(KEY_STORAGE) ?? ''
export const storeKey = (key) => sessionStorage.setItem(KEY_STORAGE, key)
export const forgetKey = () => sessionStorage.removeItem(KEY_STORAGE)

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message)
    this.status = status
    this.code = code
    this.retryAfter = retryAfter
  }
}

/** What to tell an analyst for each refusal; the server's own message for the rest. */
export function explain(err) {
  if (!(err instanceof ApiError)) return `Gleaner could not be reached (${err.message}).`
  if (err.status === 401) {
    return 'This API key was not accepted: it is unknown or has been revoked. Check that you pasted all of it (it starts with gln_).'
  }
  if (err.status === 403) return 'This API key does not have the read scope. Ask for a key with the read scope.'
  if (err.status === 429) return `Too many requests for this key; try again in ${err.retryAfter ?? 'a few'} seconds.`
  if (err.status >= 500) return `Gleaner had a problem (${err.status} ${err.code}): ${err.message}`
  return err.message
}

const headers = (key, extra = {}) => (key ? { ...extra, authorization: `Bearer ${key}` } : extra)

async function failure(res) {
  let body = null
  try {
    body = await res.json()
  } catch {}
  const retry = Number(res.headers.get('retry-after'))
  return new ApiError(res.status, body?.error?.code ?? 'HTTP_ERROR', body?.error?.message ?? res.statusText, Number.isFinite(retry) ? retry : undefined)
}

/** Listeners told when the stored key stops working (revoked while the console is open). */
const onUnauthorized = new Set()
export const whenUnauthorized = (fn) => onUnauthorized.add(fn)

/** GET a JSON resource with the stored key, or with `key` when checking a new one. */
export async function getJson(path, params = {}, { key = storedKey(), signal } = {}) {
  const res = await fetch(withQuery(path, params), { headers: headers(key, { accept: 'application/json' }), signal })
  if (!res.ok) {
    const err = await failure(res)
    if (err.status === 401) for (const fn of onUnauthorized) fn(err)
    throw err
  }
  return res.json()
}

/** A GET whose body the caller streams (the live tab) or saves (exports). */
export async function getRaw(path, params = {}, { accept, signal } = {}) {
  const res = await fetch(withQuery(path, params), { headers: headers(storedKey(), accept ? { accept } : {}), signal })
  if (!res.ok) {
    const err = await failure(res)
    if (err.status === 401) for (const fn of onUnauthorized) fn(err)
    throw err
  }
  return res
}

/** `path?k=v…` without empty values. */
export function withQuery(path, params) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  const s = q.toString()
  return s ? `${path}?${s}` : path
}
