// Personal data in free text: emails, phone numbers, payment cards (Luhn-checked), IBANs
// (checksum-checked by ibantools), IPv4 and IPv6 addresses, @handles, URLs, and other long
// numbers (account, order and reference numbers). `findPii` returns typed spans;
// `maskPii` replaces them ("[email]", or anything a caller chooses: typed placeholders such
// as <EMAIL_1> for text sent to an external model, or "" to drop handles and links).
//
// One hand-written left-to-right scan instead of a library or a set of regexes because the
// text is hostile and up to 32,000 characters a message: every step here either consumes
// what it examined or looks at a bounded window (64 characters before an "@", 255 after),
// so the cost is linear in the text whatever it holds. linkifyjs finds links, emails and
// mentions but not cards, IBANs or phone numbers; libphonenumber-js's finder carries
// ~150 kB of metadata and is not proven linear on adversarial input; regexes with several
// unbounded \S+ are super-linear in V8 (2,500 "@" take 10 s).
import { isValidIBAN } from 'ibantools'

export const PII_KINDS = ['email', 'phone', 'card', 'iban', 'ip', 'handle', 'url', 'number'] as const
export type PiiKind = (typeof PII_KINDS)[number]

export interface PiiSpan {
  kind: PiiKind
  /** UTF-16 offsets into the text, end exclusive */
  start: number
  end: number
}

/** RFC 5321's limits: a local part of at most 64 characters, a domain of at most 255. */
const EMAIL_LOCAL_MAX = 64
const EMAIL_DOMAIN_MAX = 255
/** Twitter's limit is 15; other networks allow a little more. */
const HANDLE_MAX = 30
/** E.164: at most 15 digits; fewer than 7 is an extension or a short code, not a phone number. */
const PHONE_DIGITS: readonly [number, number] = [7, 15]
/** Payment card numbers (PANs) are 12 to 19 digits; shorter runs pass Luhn by chance too often. */
const CARD_DIGITS: readonly [number, number] = [13, 19]
/**
 * A run of at least this many digits that is nothing more specific is masked as a number
 * (account, order, ticket or reference numbers); four digits stay, so years and amounts read.
 */
const NUMBER_MIN_DIGITS = 5
/** IBANs are 15 (Norway) to 34 characters. */
const IBAN_CHARS: readonly [number, number] = [15, 34]
const IPV6_MAX_CHARS = 39

const isDigit = (c: number) => c >= 48 && c <= 57
const isUpper = (c: number) => c >= 65 && c <= 90
const isLower = (c: number) => c >= 97 && c <= 122
const isAlnum = (c: number) => isDigit(c) || isUpper(c) || isLower(c)
const isHex = (c: number) => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
const isWordChar = (c: number) => isAlnum(c) || c === 95 /* _ */ || c > 127
const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11 || c === 0xa0
/** Characters of an email's local part (the common subset of RFC 5322's atext, plus dots). */
const isLocalChar = (c: number) => isAlnum(c) || c === 46 || c === 95 || c === 37 || c === 43 || c === 45
const isDomainChar = (c: number) => isAlnum(c) || c === 45 || c === 46
/** Trailing punctuation that ends a sentence, not a link. */
const isTrailingPunct = (c: number) =>
  c === 46 || c === 44 || c === 59 || c === 58 || c === 33 || c === 63 || c === 41 || c === 93 || c === 34 || c === 39 || c === 0x2019

function startsWithIgnoreCase(text: string, at: number, prefix: string): boolean {
  if (at + prefix.length > text.length) return false
  for (let k = 0; k < prefix.length; k++) if ((text.charCodeAt(at + k) | 0x20) !== prefix.charCodeAt(k)) return false
  return true
}

function luhn(digits: string): boolean {
  let sum = 0
  let double = false
  for (let k = digits.length - 1; k >= 0; k--) {
    let d = digits.charCodeAt(k) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return sum % 10 === 0
}

/** A link from i (at "http://", "https://" or "www."): up to whitespace, without trailing punctuation. */
function scanUrl(text: string, i: number): number {
  let end = i
  while (end < text.length && !isSpace(text.charCodeAt(end))) end++
  while (end > i && isTrailingPunct(text.charCodeAt(end - 1))) end--
  return end
}

/** The end of a valid email domain starting at i (labels joined by dots, a last label of 2+ letters), or -1. */
function scanEmailDomain(text: string, i: number): number {
  const limit = Math.min(text.length, i + EMAIL_DOMAIN_MAX)
  let end = i
  while (end < limit && isDomainChar(text.charCodeAt(end))) end++
  while (end > i && (text.charCodeAt(end - 1) === 46 || text.charCodeAt(end - 1) === 45)) end--
  const domain = text.slice(i, end)
  const dot = domain.lastIndexOf('.')
  if (dot <= 0 || domain.includes('..')) return -1
  const tld = domain.slice(dot + 1)
  if (tld.length < 2) return -1
  for (let k = 0; k < tld.length; k++) if (!isUpper(tld.charCodeAt(k)) && !isLower(tld.charCodeAt(k))) return -1
  return end
}

interface DigitRun {
  end: number
  digits: string
  /** separators seen, as a set of characters */
  separators: string
  leadingPlus: boolean
  groups: number[]
}

/**
 * A maximal run of digits joined by single separators (space, "-", ".", "/", parentheses)
 * from i. The caller always continues after `end`, so no digit is scanned twice.
 */
function scanDigitRun(text: string, i: number): DigitRun {
  let k = i
  const leadingPlus = text.charCodeAt(k) === 43
  if (leadingPlus) k++
  let digits = ''
  let separators = ''
  const groups: number[] = []
  let group = 0
  let lastDigitEnd = k
  while (k < text.length) {
    const c = text.charCodeAt(k)
    if (isDigit(c)) {
      digits += text[k]
      group++
      k++
      lastDigitEnd = k
      continue
    }
    const isSep = c === 32 || c === 45 || c === 46 || c === 47 || c === 40 || c === 41
    if (!isSep) break
    // at most two separator characters in a row (") ", " (") and a digit must follow
    let next = k + 1
    if (next < text.length && (text.charCodeAt(next) === 32 || text.charCodeAt(next) === 40)) next++
    if (next >= text.length || !isDigit(text.charCodeAt(next))) break
    if (group) groups.push(group)
    group = 0
    for (let s = k; s < next; s++) if (!separators.includes(text[s]!)) separators += text[s]
    k = next
  }
  if (group) groups.push(group)
  return { end: lastDigitEnd, digits, separators, leadingPlus, groups }
}

function classifyDigitRun(run: DigitRun, text: string, start: number): PiiKind | undefined {
  const n = run.digits.length
  if (run.separators === '.' && run.groups.length === 4 && run.groups.every((g) => g <= 3)) {
    const parts = text.slice(start, run.end).split('.')
    if (parts.every((p) => Number(p) <= 255)) return 'ip'
  }
  const dateLike =
    run.groups.length === 3 &&
    !run.leadingPlus &&
    (run.separators === '-' || run.separators === '/' || run.separators === '.') &&
    ((run.groups[0] === 4 && run.groups[1]! <= 2 && run.groups[2]! <= 2) || (run.groups[0]! <= 2 && run.groups[1]! <= 2 && (run.groups[2] === 4 || run.groups[2] === 2)))
  if (dateLike) return undefined
  const decimal = run.separators === '.' && run.groups.length === 2
  if (decimal) return n >= NUMBER_MIN_DIGITS + 3 ? 'number' : undefined
  if (n >= CARD_DIGITS[0] && n <= CARD_DIGITS[1] && !run.leadingPlus && /^[ -]*$/.test(run.separators) && luhn(run.digits)) return 'card'
  if (n >= PHONE_DIGITS[0] && n <= PHONE_DIGITS[1] && (run.leadingPlus || run.separators !== '' || n >= 10)) return 'phone'
  if (n >= NUMBER_MIN_DIGITS) return 'number'
  return undefined
}

/** An IBAN at i (two letters, two digits, then letters and digits, optionally in groups of four), or -1. */
function scanIban(text: string, i: number): number {
  let k = i
  let compact = ''
  let lastEnd = i
  const limit = Math.min(text.length, i + IBAN_CHARS[1] + 9)
  while (k < limit && compact.length < IBAN_CHARS[1]) {
    const c = text.charCodeAt(k)
    if (isAlnum(c)) {
      compact += text[k]!.toUpperCase()
      k++
      lastEnd = k
    } else if (c === 32 && k + 1 < text.length && isAlnum(text.charCodeAt(k + 1)) && compact.length % 4 === 0) {
      k++
    } else break
  }
  if (lastEnd < text.length && isAlnum(text.charCodeAt(lastEnd))) return -1
  return compact.length >= IBAN_CHARS[0] && isValidIBAN(compact) ? lastEnd : -1
}

/** An IPv6 address at i: hex groups of at most four joined by ":", with "::" or all eight groups; or -1. */
function scanIpv6(text: string, i: number): number {
  const limit = Math.min(text.length, i + IPV6_MAX_CHARS + 1)
  let k = i
  while (k < limit && (isHex(text.charCodeAt(k)) || text.charCodeAt(k) === 58)) k++
  if (k < text.length && (isWordChar(text.charCodeAt(k)) || text.charCodeAt(k) === 58)) return -1
  const candidate = text.slice(i, k)
  const groups = candidate.split(':')
  const compressed = candidate.includes('::')
  if (groups.length < 3 || groups.length > 8 || (!compressed && groups.length !== 8)) return -1
  if (candidate.indexOf('::') !== candidate.lastIndexOf('::') || candidate.includes(':::')) return -1
  if (!groups.every((g) => g.length <= 4)) return -1
  if (groups.filter((g) => g.length > 0).length < 2) return -1
  return k
}

/**
 * Every piece of personal data in the text, in order, never overlapping. `kinds` limits
 * what is looked for (all by default).
 */
export function findPii(text: string, kinds: readonly PiiKind[] = PII_KINDS): PiiSpan[] {
  const want = new Set(kinds)
  const spans: PiiSpan[] = []
  const push = (kind: PiiKind, start: number, end: number) => {
    if (want.has(kind)) spans.push({ kind, start, end })
  }
  let i = 0
  const n = text.length
  while (i < n) {
    const c = text.charCodeAt(i)
    const prev = i > 0 ? text.charCodeAt(i - 1) : 32
    const atWordStart = !isWordChar(prev)

    if (atWordStart && (c === 104 || c === 72 || c === 119 || c === 87)) {
      if (startsWithIgnoreCase(text, i, 'https://') || startsWithIgnoreCase(text, i, 'http://') || startsWithIgnoreCase(text, i, 'www.')) {
        const end = scanUrl(text, i)
        push('url', i, end)
        i = end
        continue
      }
    }

    if (c === 64 /* @ */) {
      // an email: look back over the local part (bounded), forward over the domain (bounded)
      let localStart = i
      const floor = Math.max(0, i - EMAIL_LOCAL_MAX, spans.length ? spans[spans.length - 1]!.end : 0)
      while (localStart > floor && isLocalChar(text.charCodeAt(localStart - 1))) localStart--
      if (localStart < i && text.charCodeAt(localStart) !== 46) {
        const end = scanEmailDomain(text, i + 1)
        if (end !== -1) {
          push('email', localStart, end)
          i = end
          continue
        }
      }
      if (localStart === i || !isLocalChar(prev)) {
        let end = i + 1
        while (end < n && end - i <= HANDLE_MAX && (isAlnum(text.charCodeAt(end)) || text.charCodeAt(end) === 95)) end++
        if (end > i + 1 && !(end < n && isWordChar(text.charCodeAt(end)))) {
          push('handle', i, end)
          i = end
          continue
        }
      }
      i++
      continue
    }

    if (atWordStart && isUpper(c | 0) && isUpper(text.charCodeAt(i + 1)) && isDigit(text.charCodeAt(i + 2)) && isDigit(text.charCodeAt(i + 3))) {
      const end = scanIban(text, i)
      if (end !== -1) {
        push('iban', i, end)
        i = end
        continue
      }
    }

    if (atWordStart && isHex(c) && prev !== 58) {
      // IPv6 needs a colon within the first five characters; cheap to rule out otherwise
      let colon = i
      while (colon < i + 5 && colon < n && isHex(text.charCodeAt(colon))) colon++
      if (text.charCodeAt(colon) === 58) {
        const end = scanIpv6(text, i)
        if (end !== -1) {
          push('ip', i, end)
          i = end
          continue
        }
      }
    }

    if (isDigit(c) || ((c === 43 || c === 40) /* + ( */ && isDigit(text.charCodeAt(i + 1)))) {
      const start = c === 40 ? i + 1 : i
      const run = scanDigitRun(text, start)
      // digits glued to letters ("A1234567", "v2") belong to a word or code; still a number if long
      const kind = classifyDigitRun(run, text, start)
      if (kind) push(kind, kind === 'phone' ? i : start, run.end)
      i = Math.max(run.end, i + 1)
      continue
    }
    i++
  }
  return spans
}

/** Which number each value got, per kind: pass one to several maskPii calls to number across them. */
export interface PiiNumbering {
  seen: Map<string, number>
  counters: Map<PiiKind, number>
}
export const newPiiNumbering = (): PiiNumbering => ({ seen: new Map(), counters: new Map() })

/** Typed, numbered placeholders (<EMAIL_1>, <CARD_2>): the text still reads, the value is gone. */
export const typedPlaceholder = (span: PiiSpan, indexOfKind: number) => `<${span.kind.toUpperCase()}_${indexOfKind}>`

/** The default replacement: the kind in brackets ("[email]"). */
export const bracketedKind = (span: PiiSpan) => `[${span.kind}]`

/**
 * The text with every span replaced. `replace` gets each span and the index of its kind
 * (1 for the first email, 2 for the second…), so typed placeholders like <EMAIL_1> are one
 * line: `maskPii(text, { replace: (s, n) => \`<${s.kind.toUpperCase()}_${n}>\` })`.
 */
export function maskPii(
  text: string,
  opts: {
    kinds?: readonly PiiKind[]
    replace?: (span: PiiSpan, indexOfKind: number, original: string) => string
    /** shared across calls (the messages of one conversation) so a value keeps its number in all of them */
    numbering?: PiiNumbering
  } = {}
): string {
  const spans = findPii(text, opts.kinds)
  if (!spans.length) return text
  const replace = opts.replace ?? bracketedKind
  const { seen, counters } = opts.numbering ?? newPiiNumbering()
  let out = ''
  let last = 0
  for (const span of spans) {
    const original = text.slice(span.start, span.end)
    // the same value gets the same number, so "<EMAIL_1> … <EMAIL_1>" still reads as one address
    const key = `${span.kind}\u0000${original}`
    let index = seen.get(key)
    if (index === undefined) {
      index = (counters.get(span.kind) ?? 0) + 1
      counters.set(span.kind, index)
      seen.set(key, index)
    }
    out += text.slice(last, span.start) + replace(span, index, original)
    last = span.end
  }
  return out + text.slice(last)
}
