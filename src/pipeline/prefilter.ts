// Prefilter: a cheap judgement, before any analysis is paid for, of whether a conversation
// carries enough of the customer's own words to be worth analysing.
import { CUSTOMER_ROLES, type Message } from '../domain.ts'

export type SkipReason = 'no_user_message' | 'too_short' | 'boilerplate_only' | 'links_only'
export type PrefilterVerdict = { skip: false } | { skip: true; reason: SkipReason }

export interface PrefilterOptions {
  enabled: boolean
  minUserChars: number
  minUserWords: number
  boilerplate: Set<string>
}

export function prefilterOptionsFrom(config: {
  PREFILTER_ENABLED: boolean
  PREFILTER_MIN_USER_CHARS: number
  PREFILTER_MIN_USER_WORDS: number
  PREFILTER_BOILERPLATE: string
}): PrefilterOptions {
  return {
    enabled: config.PREFILTER_ENABLED,
    minUserChars: config.PREFILTER_MIN_USER_CHARS,
    minUserWords: config.PREFILTER_MIN_USER_WORDS,
    boilerplate: new Set(
      config.PREFILTER_BOILERPLATE.split(',')
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean)
    )
  }
}

const URL_RE = /\b(?:https?:\/\/|www\.)\S+/giu
const HAS_URL_RE = /(?:https?:\/\/|www\.)\S+/iu
// a whitespace-delimited token; an address is judged per token by isEmailLike, not by a
// pattern like /\S+@\S+\.\S+/, which backtracks cubically on a run of '@' (issue #14)
const TOKEN_RE = /\S+/gu
// punctuation, symbols, and the marks and format characters emoji are built from
// (variation selectors, zero-width joiners): none of them is a word
const PUNCT_RE = /[\p{P}\p{S}\p{M}\p{Cf}]+/gu
const HAS_WORD_CHAR_RE = /[\p{L}\p{N}]/u

/**
 * Whether a token has the shape local@domain.tld: an '@' after its first character and a '.'
 * at least two characters after that '@' and before the token's last character. Two index
 * scans: linear in the token.
 */
function isEmailLike(token: string): boolean {
  const at = token.indexOf('@', 1)
  return at !== -1 && token.lastIndexOf('.', token.length - 2) >= at + 2
}

function withoutEmails(text: string): string {
  return text.includes('@') ? text.replace(TOKEN_RE, (token) => (isEmailLike(token) ? ' ' : token)) : text
}

const longestCache = new WeakMap<Set<string>, number>()
function longestPhrase(phrases: Set<string>): number {
  let n = longestCache.get(phrases)
  if (n === undefined) {
    n = Math.max(0, ...[...phrases].map((b) => b.length))
    longestCache.set(phrases, n)
  }
  return n
}

export function prefilter(messages: Message[], opts: PrefilterOptions): PrefilterVerdict {
  if (!opts.enabled) return { skip: false }
  const userTexts = messages.filter((m) => CUSTOMER_ROLES.has(m.role)).map((m) => m.content)
  if (userTexts.length === 0) return { skip: true, reason: 'no_user_message' }

  const raw = userTexts.join(' ')
  // the link and address patterns backtrack: only run them where they can match
  const hasLink = raw.includes('http') || raw.includes('www.')
  const withoutLinks = withoutEmails(hasLink ? raw.replace(URL_RE, ' ') : raw)
  const words = withoutLinks.replace(PUNCT_RE, ' ').toLowerCase().split(/\s+/u).filter((w) => HAS_WORD_CHAR_RE.test(w))
  if (words.length === 0) {
    return HAS_URL_RE.test(raw) ? { skip: true, reason: 'links_only' } : { skip: true, reason: 'too_short' }
  }
  // every user message is a greeting/thanks/… alone → nothing to learn from
  // a message much longer than every boilerplate phrase cannot be one: skip normalising it
  const longest = longestPhrase(opts.boilerplate) * 2 + 16
  const allBoilerplate = userTexts.every((t) => {
    if (t.length > longest && !hasLink) return false
    const norm = (hasLink ? t.replace(URL_RE, ' ') : t).replace(PUNCT_RE, ' ').toLowerCase().replace(/\s+/gu, ' ').trim()
    return norm === '' || opts.boilerplate.has(norm)
  })
  if (allBoilerplate) return { skip: true, reason: 'boilerplate_only' }
  const chars = words.join(' ').length
  if (chars < opts.minUserChars || words.length < opts.minUserWords) return { skip: true, reason: 'too_short' }
  return { skip: false }
}
