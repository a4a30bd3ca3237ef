// Which database errors mean "the database is unavailable" (answer 503 and retry later)
// rather than "this query is wrong" (a bug: 500).

const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN'])

export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = String((e as { code?: unknown }).code ?? '')
    const message = String((e as { message?: unknown }).message ?? '')
    if (UNAVAILABLE_CODES.has(code)) return true
    // SQLSTATE classes 08 (connection exception), 57P (operator intervention: shutdown,
    // crash, cannot connect now) and 53 (insufficient resources: too many connections)
    if (/^(08|57P|53)/.test(code)) return true
    if (/Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/i.test(message)) return true
  }
  return false
}

/**
 * A statement cut by statement_timeout (SQLSTATE 57014, query_canceled): the database is
 * there but too busy for this read now, which is a 503 with Retry-After, not a bug.
 */
export function isStatementTimeout(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { code?: unknown }).code === '57014') return true
  }
  return false
}
