// Turns a model's answer into insights. Models wrap JSON in fences, talk around it, leave
// trailing commas, sprinkle citation marks ([1], 【1†source】) and drop or mangle items, so
// extraction is lenient and validation is strict: whatever comes out of here satisfies
// InsightFields. Everything is pure and total: bad input yields parseError or invalid
// indexes, never an exception.
import { consistentScore, type InsightFields, normalizeIntent, SENTIMENTS, TOPIC_RULES, URGENCIES } from '../domain.ts'

export interface ParsedAnswer {
  /** valid insights by the index the prompt gave the conversation */
  byIndex: Map<number, InsightFields>
  /** indexes the answer mentions with an item that fails validation */
  invalid: number[]
  /** set when no insight list could be found in the answer at all */
  parseError?: string
}

const MAX_SUMMARY_CHARS = 1_000
/** How many start positions we try in prose; bounds the work on a long garbage answer. */
const MAX_CANDIDATES = 50

/**
 * Parses the answer to a prompt of `count` conversations (indexes 0..count-1). Items with
 * an index outside that range are ignored, as is a repeated index after its first valid item.
 */
export function parseInsightsAnswer(text: string, count: number): ParsedAnswer {
  const byIndex = new Map<number, InsightFields>()
  const invalid = new Set<number>()
  const found = extractInsightList(typeof text === 'string' ? text : '')
  if (!found.ok) return { byIndex, invalid: [], parseError: found.error }

  const list = found.items
  // A model that forgot the index fields but answered in order is still usable; one that
  // numbered some items and not others is not guessable.
  const positional = list.every((raw) => readIndex(raw) === undefined)
  list.forEach((raw, position) => {
    const index = positional ? position : readIndex(raw)
    if (index === undefined || index < 0 || index >= count || byIndex.has(index)) return
    const insight = validateInsight(raw)
    if (insight) {
      byIndex.set(index, insight)
      invalid.delete(index)
    } else {
      invalid.add(index)
    }
  })
  return { byIndex, invalid: [...invalid].sort((a, b) => a - b) }
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

  const fenced = /```[a-zA-Z]*[ \t]*\r?\n?([\s\S]*?)```/g
  const sources: string[] = []
  for (const m of text.matchAll(fenced)) sources.push(m[1]!)
  sources.push(text)

  let fallback: unknown
  for (const source of sources) {
    let tried = 0
    for (let start = nextOpener(source, 0); start !== -1 && tried < MAX_CANDIDATES; start = nextOpener(source, start + 1)) {
      tried++
      const end = matchingClose(source, start)
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
 * Removes, outside strings, citation marks and trailing commas. Numeric arrays such as
 * [1] never occur in the insight schema, so reading them as citations loses nothing.
 */
export function repairJson(json: string): string {
  return removeTrailingCommas(removeCitations(json))
}

const BRACKET_CITATION = /^\[\^?\d+(?:\s*[,\u2013-]\s*\^?\d+)*\]/
const LENTICULAR_CITATION = /^【[^】\n]{0,80}】/

function removeCitations(json: string): string {
  let out = ''
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!
    if (inString) {
      out += c
      if (c === '\\') {
        out += json[i + 1] ?? ''
        i++
      } else if (c === '"') {
        inString = false
      }
      continue
    }
    if (c === '"') {
      inString = true
      out += c
      continue
    }
    if (c === '[' || c === '【') {
      const m = (c === '[' ? BRACKET_CITATION : LENTICULAR_CITATION).exec(json.slice(i, i + 100))
      if (m) {
        i += m[0].length - 1
        continue
      }
    }
    out += c
  }
  return out
}

function removeTrailingCommas(json: string): string {
  let out = ''
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!
    if (inString) {
      out += c
      if (c === '\\') {
        out += json[i + 1] ?? ''
        i++
      } else if (c === '"') {
        inString = false
      }
      continue
    }
    if (c === '"') inString = true
    if (c === ',') {
      let j = i + 1
      while (j < json.length && /\s/.test(json[j]!)) j++
      if (json[j] === '}' || json[j] === ']') continue
    }
    out += c
  }
  return out
}

function nextOpener(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    if (text[i] === '{' || text[i] === '[') return i
  }
  return -1
}

/** Index of the bracket closing the one at `start`, string-aware; -1 if unbalanced. */
function matchingClose(text: string, start: number): number {
  const stack: string[] = []
  let inString = false
  for (let i = start; i < text.length; i++) {
    const c = text[i]!
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
      continue
    }
    if (c === '"') inString = true
    else if (c === '{') stack.push('}')
    else if (c === '[') stack.push(']')
    else if (c === '}' || c === ']') {
      if (stack.pop() !== c) return -1
      if (stack.length === 0) return i
    }
  }
  return -1
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
export function validateInsight(raw: unknown): InsightFields | null {
  if (!isRecord(raw)) return null
  const sentiment = oneOf(raw.sentiment, SENTIMENTS)
  const urgency = oneOf(raw.urgency, URGENCIES)
  const score = toNumber(raw.sentiment_score)
  const summary = cleanText(raw.summary, MAX_SUMMARY_CHARS)
  if (!sentiment || !urgency || score === undefined || !summary || typeof raw.intent !== 'string' || !raw.intent.trim()) return null
  return {
    sentiment,
    sentiment_score: consistentScore(sentiment, score).score,
    topics: cleanTopics(raw.topics),
    intent: normalizeIntent(raw.intent).intent,
    urgency,
    summary,
    language: cleanLanguage(raw.language)
  }
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
