// Normalized text: what the cache key and the conversation's text hash are computed from.
// Two transcripts that differ only in case, spacing or timestamps analyse the same.
import { hash } from 'node:crypto'
import { AGENT_ROLES, CUSTOMER_ROLES, type Message, type Role } from '../domain.ts'

// the customer and the business side; plumbing roles carry no signal and never change the hash
const ANALYSED_ROLES: ReadonlySet<Role> = new Set([...CUSTOMER_ROLES, ...AGENT_ROLES])
const ASCII_RE = /^\p{ASCII}*$/u
// Every run of whitespace becomes one space (here and in the prefilter's boilerplate match).
// Spelled as "a run of two or more, or a single whitespace that is not a space" rather than
// /\s+/: same result, but the single spaces between words (nearly every match of /\s+/) are
// left alone instead of each replaced by a copy of itself, which made this the costliest
// step of the text hash. Linear: no nested quantifier, each alternative consumes what it
// matches.
export const WHITESPACE_RUN_RE = /\s{2,}|[^\S ]/g

export function normalizeText(messages: Message[]): string {
  const lines: string[] = []
  for (const m of messages) {
    if (!ANALYSED_ROLES.has(m.role)) continue
    // ASCII is already NFKC: skip the costly normalisation for the common case
    const content = ASCII_RE.test(m.content) ? m.content : m.content.normalize('NFKC')
    const text = content.toLowerCase().replace(WHITESPACE_RUN_RE, ' ').trim()
    if (text) lines.push(`${CUSTOMER_ROLES.has(m.role) ? 'u' : 'a'}:${text}`)
  }
  return lines.join('\n')
}

// the one-shot hash (Node 20.12+): half the cost of createHash().update().digest() for short input
export const sha256 = (s: string) => hash('sha256', s, 'hex')

export const textHash = (messages: Message[]) => sha256(normalizeText(messages))

/** The cache key also names the analyzer and prompt: a new prompt or model never reuses old answers. */
export const cacheKey = (hash: string, model: string, promptVersion: string) => sha256(`${hash}\u0000${model}\u0000${promptVersion}`)

const needsRepair = (s: string) => s.includes('\u0000') || !s.isWellFormed()

/**
 * PostgreSQL cannot store NUL in text or jsonb, and rejects lone UTF-16 surrogates in JSON:
 * remove the first, replace the second with U+FFFD, so such input is stored instead of
 * failing with a 500.
 */
export function storableText(s: string): string {
  if (!needsRepair(s)) return s
  const noNul = s.includes('\u0000') ? s.replaceAll('\u0000', '') : s
  return noNul.isWellFormed() ? noNul : noNul.toWellFormed()
}

/** Whether any string of a JSON value (keys too) is not storable as it is. Walks, allocates nothing. */
function hasUnstorable(v: unknown): boolean {
  if (typeof v === 'string') return needsRepair(v)
  if (Array.isArray(v)) return v.some(hasUnstorable)
  if (v && typeof v === 'object') {
    for (const k in v) if (needsRepair(k) || hasUnstorable((v as Record<string, unknown>)[k])) return true
  }
  return false
}

/**
 * JSON metadata with every string (keys too) made storable: the value itself when all of it
 * already is (nearly always; ingest used to copy every metadata object), else a deep copy.
 */
export function storableJson(v: unknown): unknown {
  return hasUnstorable(v) ? repairedJson(v) : v
}

function repairedJson(v: unknown): unknown {
  if (typeof v === 'string') return storableText(v)
  if (Array.isArray(v)) return v.map(repairedJson)
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, val] of Object.entries(v)) out[storableText(k)] = repairedJson(val)
    return out
  }
  return v
}
