// Reads the public labelled datasets from a directory the caller names (nothing here knows
// where they live on any machine) and splits them into train and dev deterministically.
//
// Expected layout (as the upstream files are named; see README "Local models"):
//   sentiment/sst2-train.tsv, sentiment/sst2-dev.tsv           GLUE SST-2 (label, sentence)
//   sentiment/tweeteval-{val,test}-{text,labels}.txt           TweetEval sentiment (0 neg, 1 neu, 2 pos)
//   intent/banking77-train.csv                                 banking77 (text, category)
//   intent/bitext-customer-service.csv, intent/bitext-20000-utterances.csv   Bitext (flags, utterance, category, intent)
// Any file may be missing (the CI fixture has a few lines of each); what is missing is skipped.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'csv-parse/sync'
import { fnv1a } from '../src/analyzers/text-features.ts'
import type { Intent } from '../src/domain.ts'
import { BANKING77_TO_INTENT, BITEXT_TO_INTENT } from './intent-mapping.ts'

export type SentimentLabel = 'negative' | 'neutral' | 'positive'
export interface Example<L extends string> {
  text: string
  label: L
  /** which dataset it came from: evaluation reports per set */
  set: string
  /** Bitext's register flags (W: offensive, Q: colloquial…), where the set has them */
  flags?: string
}

export interface Datasets {
  sentimentTrain: Example<SentimentLabel>[]
  /** dev sets by name: sst2 (the official GLUE dev set), tweeteval (our hash split) */
  sentimentDev: Record<string, Example<SentimentLabel>[]>
  intentTrain: Example<Intent>[]
  intentDev: Example<Intent>[]
  /** labels present in the files but mapped to nothing (left out), with counts */
  unmapped: Record<string, number>
}

const NEUTRAL_REQUEST_INTENTS: ReadonlySet<Intent> = new Set(['question', 'purchase', 'account_help'])

/** One in DEV_BUCKETS texts is dev: 20%, enough for stable per-class figures on every set. */
const DEV_BUCKETS = 5

const normalizeForSplit = (text: string) => text.toLowerCase().replace(/\s+/g, ' ').trim()

/**
 * A text's split depends only on the text (a salted hash), so it is stable across runs,
 * machines and dataset versions, and duplicates across files land on the same side.
 */
export function isDev(text: string): boolean {
  return fnv1a(`gleaner-dev-split:${normalizeForSplit(text)}`) % DEV_BUCKETS === 0
}

const readLines = (file: string) => readFileSync(file, 'utf8').split(/\r?\n/)

function readCsv(file: string): Record<string, string>[] {
  return parse(readFileSync(file), { columns: true, bom: true, skip_empty_lines: true, relax_quotes: true }) as Record<string, string>[]
}

const TWEETEVAL_LABELS: readonly SentimentLabel[] = ['negative', 'neutral', 'positive']

export function loadDatasets(dir: string): Datasets {
  const at = (...parts: string[]) => join(dir, ...parts)
  const sentimentTrain: Example<SentimentLabel>[] = []
  const sentimentDev: Record<string, Example<SentimentLabel>[]> = { sst2: [], tweeteval: [] }

  // SST-2: the official dev set is ours too (GLUE's test labels are hidden). Only binary.
  const sst = (file: string, into: Example<SentimentLabel>[]) => {
    if (!existsSync(file)) return
    for (const line of readLines(file).slice(1)) {
      const tab = line.indexOf('\t')
      if (tab === -1) continue
      const label = line.slice(0, tab) === '1' ? 'positive' : 'negative'
      into.push({ text: line.slice(tab + 1), label, set: 'sst2' })
    }
  }
  sst(at('sentiment', 'sst2-train.tsv'), sentimentTrain)
  sst(at('sentiment', 'sst2-dev.tsv'), sentimentDev.sst2!)

  // TweetEval has no train file here: val and test together, split by text hash.
  const seen = new Set<string>()
  for (const part of ['val', 'test']) {
    const textFile = at('sentiment', `tweeteval-${part}-text.txt`)
    if (!existsSync(textFile)) continue
    const texts = readLines(textFile)
    const labels = readLines(at('sentiment', `tweeteval-${part}-labels.txt`))
    for (let i = 0; i < texts.length; i++) {
      const text = texts[i]!.trim()
      const label = TWEETEVAL_LABELS[Number(labels[i])]
      if (!text || !label || seen.has(text)) continue
      seen.add(text)
      ;(isDev(text) ? sentimentDev.tweeteval! : sentimentTrain).push({ text, label, set: 'tweeteval' })
    }
  }

  // Intent: banking77 and both Bitext files, mapped onto the taxonomy, one split over all.
  const unmapped: Record<string, number> = {}
  const byText = new Map<string, Example<Intent> | null>()
  const add = (text: string, source: string, label: string, mapping: Readonly<Record<string, Intent | null>>, flags?: string) => {
    const intent = mapping[label]
    if (intent === undefined || intent === null) {
      unmapped[`${source}:${label}`] = (unmapped[`${source}:${label}`] ?? 0) + 1
      return
    }
    const key = normalizeForSplit(text)
    const prior = byText.get(key)
    if (prior === undefined) byText.set(key, { text, label: intent, set: source, ...(flags ? { flags } : {}) })
    else if (prior !== null && prior.label !== intent) byText.set(key, null) // the sets disagree: trust neither
  }
  const banking = at('intent', 'banking77-train.csv')
  if (existsSync(banking)) for (const row of readCsv(banking)) add(row.text ?? '', 'banking77', row.category ?? '', BANKING77_TO_INTENT)
  for (const file of ['bitext-customer-service.csv', 'bitext-20000-utterances.csv']) {
    const path = at('intent', file)
    if (existsSync(path)) for (const row of readCsv(path)) add(row.utterance ?? '', 'bitext', row.intent ?? '', BITEXT_TO_INTENT, row.flags)
  }
  const intentTrain: Example<Intent>[] = []
  const intentDev: Example<Intent>[] = []
  for (const example of byText.values()) if (example) (isDev(example.text) ? intentDev : intentTrain).push(example)

  // Neither sentiment set has a support request in it, so plain requests ("how do I change
  // my PIN?") would be read by tone words alone ("help" as positive). Requests from the
  // intent training split whose intent carries no grievance, minus Bitext's offensive
  // register (W), teach that a plain request is neutral.
  sentimentTrain.push(...supportRequestsAsNeutral(intentTrain))

  return { sentimentTrain, sentimentDev, intentTrain, intentDev, unmapped }
}

/** The plain requests among intent examples, as neutral sentiment examples (see loadDatasets). */
export function supportRequestsAsNeutral(intent: readonly Example<Intent>[]): Example<SentimentLabel>[] {
  return intent
    .filter((e) => NEUTRAL_REQUEST_INTENTS.has(e.label) && !e.flags?.includes('W'))
    .map((e) => ({ text: e.text, label: 'neutral' as const, set: 'support-requests' }))
}
