// Prefilter: a cheap judgement, before any analysis is paid for, of whether a conversation
// carries enough of the customer's own words to be worth analysing.
import { CUSTOMER_ROLES, type Message } from '../domain.ts'
import { WHITESPACE_RUN_RE } from './normalize.ts'

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

  // the link and address patterns backtrack: only run them where they can match
  const hasLinkIn = (t: string) => t.includes('http') || t.includes('www.')
  const hasLink = userTexts.some(hasLinkIn)
  // Words message by message, stopping once there are enough: a message boundary is a space
  // in the joined text, so the words are the same as the joined text's; most conversations
  // pass on their first message, and the rest of the transcript is never tokenised.
  let wordCount = 0
  let chars = -1 // length of the words joined by spaces
  for (const t of userTexts) {
    const withoutLinks = withoutEmails(hasLinkIn(t) ? t.replace(URL_RE, ' ') : t)
    for (const w of withoutLinks.replace(PUNCT_RE, ' ').toLowerCase().split(/\s+/u)) {
      if (!HAS_WORD_CHAR_RE.test(w)) continue
      wordCount++
      chars += w.length + 1
    }
    if (wordCount > 0 && wordCount >= opts.minUserWords && chars >= opts.minUserChars) break
  }
  if (wordCount === 0) {
    return userTexts.some((t) => HAS_URL_RE.test(t)) ? { skip: true, reason: 'links_only' } : { skip: true, reason: 'too_short' }
  }
  // every user message is a greeting/thanks/… alone → nothing to learn from
  // a message much longer than every boilerplate phrase cannot be one: skip normalising it
  const longest = longestPhrase(opts.boilerplate) * 2 + 16
  const allBoilerplate = userTexts.every((t) => {
    if (t.length > longest && !hasLink) return false
    const norm = (hasLink ? t.replace(URL_RE, ' ') : t).replace(PUNCT_RE, ' ').toLowerCase().replace(WHITESPACE_RUN_RE, ' ').trim()
    return norm === '' || opts.boilerplate.has(norm)
  })
  if (allBoilerplate) return { skip: true, reason: 'boilerplate_only' }
  if (chars < opts.minUserChars || wordCount < opts.minUserWords) return { skip: true, reason: 'too_short' }
  return { skip: false }
}
