// Turns a model's answer into insights. Models wrap JSON in fences, talk around it, leave
// trailing commas, sprinkle citation marks ([1], 【1†source】) and drop or mangle items, so
// extraction is lenient and validation is strict: whatever comes out of here satisfies
// InsightFields. Everything is pure and total: bad input yields parseError or invalid
// indexes, never an exception.
import { Compile } from 'typebox/compile'
import { consistentScore, type InsightFields, InsightFieldsSchema, normalizeIntent, SENTIMENTS, TOPIC_RULES, URGENCIES } from '../domain.ts'

// compiled once: Value.Check walked the schema for every insight of every model answer
// (about a twentieth of the worker's CPU with a model, batches of 20)
const insightValidator = Compile(InsightFieldsSchema)

export interface ParsedAnswer {
  /** valid insights by the index the prompt gave the conversation */
  byIndex: Map<number, InsightFields>
  /** indexes the answer mentions with an item that fails validation, or more than once */
  invalid: number[]
  /** set when no insight list could be found in the answer at all */
  parseError?: string
  /** what the parser had to correct in the insights it kept, for the model's metrics */
  adjustments: AnswerAdjustments
}

export interface AnswerAdjustments {
  /** intents outside the taxonomy and its synonyms, mapped to `other` */
  unknownIntent: number
  /** scores moved into their label's band (or into [-1, 1]) */
  scoreClamped: number
  /** answers whose items carried no index and did not match the prompt's count: all re-asked */
  positionalMismatch: number
}

const MAX_SUMMARY_CHARS = 1_000
/** How many start positions we try in prose; bounds the work on a long garbage answer. */
const MAX_CANDIDATES = 50

const noAdjustments = (): AnswerAdjustments => ({ unknownIntent: 0, scoreClamped: 0, positionalMismatch: 0 })

/**
 * Parses the answer to a prompt of `count` conversations (indexes 0..count-1). An item
 * lands on a conversation only when that is certain: its index is in range and no other
 * item claims it, or, with no index at all, the answer holds exactly `count` items in
 * order. Anything else is left out (and re-asked by the caller): a dropped item must never
 * shift every later insight onto the wrong conversation.
 */
export function parseInsightsAnswer(text: string, count: number): ParsedAnswer {
  const byIndex = new Map<number, InsightFields>()
  const invalid = new Set<number>()
  const adjustments = noAdjustments()
  const found = extractInsightList(typeof text === 'string' ? text : '')
  if (!found.ok) return { byIndex, invalid: [], parseError: found.error, adjustments }

  const list = found.items
  // A model that forgot the index fields but answered in order is usable only when the
  // count matches exactly; one that numbered some items and not others is not guessable.
  const positional = list.every((raw) => readIndex(raw) === undefined)
  if (positional && list.length !== count) {
    adjustments.positionalMismatch++
    return { byIndex, invalid: [], adjustments }
  }
  const claims = new Map<number, number>()
  list.forEach((raw, position) => {
    const index = positional ? position : readIndex(raw)
    if (index !== undefined) claims.set(index, (claims.get(index) ?? 0) + 1)
  })
  list.forEach((raw, position) => {
    const index = positional ? position : readIndex(raw)
    if (index === undefined || index < 0 || index >= count) return
    if (claims.get(index)! > 1) {
      // two answers for one conversation: either could be the one meant for a neighbour
      invalid.add(index)
      return
    }
    const insight = validateInsight(raw, adjustments)
    if (insight) byIndex.set(index, insight)
    else invalid.add(index)
  })
  return { byIndex, invalid: [...invalid].sort((a, b) => a - b), adjustments }
}

/** The list of raw items in an answer: the {"insights": [...]} wrapper, a bare array, or a single item. */
export function extractInsightList(text: string): { ok: true; items: unknown[] } | { ok: false; error: string } {
  const value = extractJson(text)
  if (value === undefined) return { ok: false, error: 'no JSON found in the answer' }
  const items = asInsightList(value)
  if (!items) return { ok: false, error: 'the answer holds JSON but no list of insights' }
  return { ok: true, items }
}

function asInsightList(value: unknown): unknown[] | undefined {
  if (Array.isArray(value)) return value
  if (!isRecord(value)) return undefined
  if (Array.isArray(value.insights)) return value.insights
  // A batch of one is sometimes answered with the bare item.
  if ('sentiment' in value) return [value]
  // Some models rename the wrapper key ("results", "items", "data"); any array of objects will do.
  for (const v of Object.values(value)) {
    if (Array.isArray(v) && v.length > 0 && v.every(isRecord)) return v
  }
  return undefined
}

/**
 * The first JSON value in `text` that looks like an answer, repaired if needed; undefined
 * when there is none. Exported for tests and for other answer shapes.
 */
export function extractJson(text: string): unknown {
  const direct = tryParse(text.trim())
  if (direct !== undefined && asInsightList(direct)) return direct

  // the info string stays in the capture (the JSON scan below skips it): matching it
  // separately backtracked quadratically on an unclosed fence
  const fenced = /```([\s\S]*?)```/g
  const sources: string[] = []
  for (const m of text.matchAll(fenced)) sources.push(m[1]!)
  sources.push(text)

  let fallback: unknown
  for (const source of sources) {
    const starts: number[] = []
    for (let at = nextOpener(source, 0); at !== -1 && starts.length < MAX_CANDIDATES; at = nextOpener(source, at + 1)) starts.push(at)
    const closes = new ClosingBrackets(source, starts)
    for (const start of starts) {
      const end = closes.of(start)
      if (end === -1) continue
      const value = tryParse(repairJson(source.slice(start, end + 1)))
      if (value === undefined) continue
      if (asInsightList(value)) return value
      fallback ??= value
    }
  }
  return fallback ?? direct
}

/**
 * Removes, outside strings, citation marks and trailing commas, in one pass. Numeric arrays
 * such as [1] never occur in the insight schema, so reading them as citations loses nothing.
 * Linear in the text: every position is looked at a bounded number of times.
 */
export function repairJson(json: string): string {
  let out = ''
  let from = 0 // start of the stretch kept as is
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (c === '"') {
      i = stringEnd(json, i)
      continue
    }
    const drop = c === ',' ? (closesNext(json, i + 1) ? 1 : 0) : citationLength(json, i)
    if (drop > 0) {
      out += json.slice(from, i)
      from = i + drop
      i += drop - 1
    }
  }
  return out + json.slice(from)
}

const BRACKET_CITATION = /^\[\^?\d+(?:\s*[,\u2013-]\s*\^?\d+)*\]/
const LENTICULAR_CITATION = /^【[^】\n]{0,80}】/
/** Longer than any citation mark either pattern accepts: the patterns only ever see this much. */
const CITATION_WINDOW = 100

/**
 * The one string-aware step every scanner here shares: the index of the quote closing the
 * string that opens at `start`, escapes skipped; the last index when it never closes.
 */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i]
    if (c === '\\') i++
    else if (c === '"') return i
  }
  return text.length - 1
}

/** Length of the citation mark at `i` ([1], [^2], [1-3], 【1†source】), 0 when there is none. */
function citationLength(text: string, i: number): number {
  const c = text[i]
  if (c !== '[' && c !== '【') return 0
  const m = (c === '[' ? BRACKET_CITATION : LENTICULAR_CITATION).exec(text.slice(i, i + CITATION_WINDOW))
  return m ? m[0].length : 0
}

/** Whether only whitespace and citation marks stand between `from` and a closing bracket: a trailing comma. */
function closesNext(text: string, from: number): boolean {
  for (let j = from; j < text.length; ) {
    const c = text[j]!
    if (c === '}' || c === ']') return true
    if (/\s/.test(c)) {
      j++
      continue
    }
    const n = citationLength(text, j)
    if (n === 0) return false
    j += n
  }
  return false
}

function nextOpener(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '{' || text[i] === '[') return i
  }
  return -1
}

/**
 * Where the bracket at each candidate start closes, string-aware; -1 when it never does.
 * One scan from a start also settles every candidate nested in it (a scan from an inner
 * opener reads the same characters the same way), so a hostile answer such as a million
 * "[" costs one scan, not one per candidate.
 */
class ClosingBrackets {
  private readonly known = new Map<number, number>()
  private readonly candidates: ReadonlySet<number>

  constructor(
    private readonly text: string,
    starts: readonly number[]
  ) {
    this.candidates = new Set(starts)
  }

  of(start: number): number {
    const known = this.known.get(start)
    if (known !== undefined) return known
    const { text } = this
    const stack: { close: string; at: number }[] = []
    const settle = (at: number, end: number) => {
      if (this.candidates.has(at)) this.known.set(at, end)
    }
    for (let i = start; i < text.length; i++) {
      const c = text[i]!
      if (c === '"') i = stringEnd(text, i)
      else if (c === '{') stack.push({ close: '}', at: i })
      else if (c === '[') stack.push({ close: ']', at: i })
      else if (c === '}' || c === ']') {
        const open = stack.pop()!
        if (open.close !== c) {
          // a mismatch ends every bracket still open, this one included
          settle(open.at, -1)
          for (const o of stack) settle(o.at, -1)
          return this.known.get(start) ?? -1
        }
        settle(open.at, i)
        if (stack.length === 0) return i
      }
    }
    for (const o of stack) settle(o.at, -1)
    return -1
  }
}

function tryParse(text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function readIndex(raw: unknown): number | undefined {
  if (!isRecord(raw)) return undefined
  const v = raw.index
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : Number.NaN
  return Number.isInteger(n) ? n : undefined
}

/**
 * One raw item → InsightFields, or null when it cannot be made valid without guessing.
 * Labels are mapped onto the shared taxonomy (any case or spacing, known synonyms, anything
 * else `other`), and a score that contradicts its label is clamped into the label's band.
 */
export function validateInsight(raw: unknown, adjustments?: AnswerAdjustments): InsightFields | null {
  if (!isRecord(raw)) return null
  const sentiment = oneOf(raw.sentiment, SENTIMENTS)
  const urgency = oneOf(raw.urgency, URGENCIES)
  const score = toNumber(raw.sentiment_score)
  const summary = cleanText(raw.summary, MAX_SUMMARY_CHARS)
  if (!sentiment || !urgency || score === undefined || !summary || typeof raw.intent !== 'string' || !raw.intent.trim()) return null
  const consistent = consistentScore(sentiment, score)
  const intent = normalizeIntent(raw.intent)
  const insight: InsightFields = {
    sentiment,
    sentiment_score: consistent.score,
    topics: cleanTopics(raw.topics),
    intent: intent.intent,
    urgency,
    summary,
    language: cleanLanguage(raw.language)
  }
  // the last word is the schema's: what leaves here is what the API promises
  if (!insightValidator.Check(insight)) return null
  if (adjustments) {
    if (!intent.known) adjustments.unknownIntent++
    if (consistent.adjusted) adjustments.scoreClamped++
  }
  return insight
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[]): T | undefined {
  if (typeof v !== 'string') return undefined
  const s = v.trim().toLowerCase()
  return (allowed as readonly string[]).includes(s) ? (s as T) : undefined
}

function toNumber(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN
  return Number.isFinite(n) ? n : undefined
}

function cleanText(v: unknown, max: number): string {
  if (typeof v !== 'string') return ''
  const s = v.replace(/\s+/g, ' ').trim()
  return s.length <= max ? s : `${s.slice(0, max - 1).trimEnd()}…`
}

function cleanTopics(v: unknown): string[] {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(',') : []
  const topics = new Set<string>()
  for (const t of list) {
    if (typeof t !== 'string') continue
    const topic = t.replace(/\s+/g, ' ').trim().toLowerCase().slice(0, TOPIC_RULES.maxChars).trim()
    if (topic) topics.add(topic)
    if (topics.size === TOPIC_RULES.maxTopics) break
  }
  return [...topics]
}

/** ISO 639-1 where the model gave one (also from "en-US" or "EN"); 'und' otherwise. */
function cleanLanguage(v: unknown): string {
  if (typeof v !== 'string') return 'und'
  const m = /^\s*([a-zA-Z]{2})(?:[-_][a-zA-Z0-9]+)*\s*$/.exec(v)
  return m ? m[1]!.toLowerCase() : 'und'
}
