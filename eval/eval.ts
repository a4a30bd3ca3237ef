// npm run eval -- --data DIR [--api] [--json FILE] [--speed N] [--validate]
// The local analyzer before (local-lexicon-v1, frozen in eval/baseline-local-lexicon-v1.ts)
// and now (local-linear-v3), side by side on the dev splits no model was trained on:
// sentiment on SST-2 dev and our TweetEval split, intent on our split of banking77 and
// Bitext mapped onto the taxonomy, multi-turn sentiment and summary ROUGE on the
// hand-written dialogues in eval/fixtures, and analyzer speed. With --api the new analyzer
// is also measured through the public API (ingest → worker → GET /api/v1/insights) on an
// in-process PGlite, to show the service gives the same figures as the function.
import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { conversationFor } from '../loadtest/workload.ts'
import type { Analyzer } from '../src/analyzers/analyzer.ts'
import { loadLinearModel } from '../src/analyzers/linear-model.ts'
import { createLocalAnalyzer, LOCAL_MODEL } from '../src/analyzers/local.ts'
import { CUSTOMER_ROLES, INTENTS, type InsightFields, type Message } from '../src/domain.ts'
import { createBaselineAnalyzer } from './baseline-local-lexicon-v1.ts'
import { type Example, loadDatasets } from './datasets.ts'
import { classificationFigures, type Figures, rouge } from './metrics.ts'
import { evaluateOutOfDistribution, loadHeldOutDialogues, type OodReport, oodTable, retrainedLocal, untrained } from './out-of-distribution.ts'

export interface Dialogue {
  id: string
  kind: string
  expect: string[]
  reference: string
  messages: Message[]
}

export function loadDialogues(): Dialogue[] {
  return (JSON.parse(readFileSync(new URL('./fixtures/dialogues.json', import.meta.url), 'utf8')) as { dialogues: Dialogue[] }).dialogues
}

/** Anything that turns conversations into insights: an analyzer in-process, or the service over HTTP. */
export type InsightSource = (conversations: Message[][]) => Promise<InsightFields[]>

/** `onFailure`, where given, stands in for an item the analyzer fails on (scored as a wrong answer); otherwise a failure throws. */
export function viaAnalyzer(analyzer: Analyzer, onFailure?: InsightFields): InsightSource {
  return async (conversations) => {
    const out: InsightFields[] = []
    for (let i = 0; i < conversations.length; i += 100) {
      const items = conversations.slice(i, i + 100).map((messages, k) => ({ id: String(i + k), source: 'eval', messages }))
      const { results } = await analyzer.analyzeBatch(items)
      for (const r of results) {
        if (r.ok) out.push(r.insight)
        else if (onFailure) out.push(onFailure)
        else throw new Error(`analysis failed: ${r.error}`)
      }
    }
    return out
  }
}

const single = (text: string): Message[] => [{ role: 'user', content: text }]
/** SST-2 is binary: positive and negative as they are; neutral and mixed by the sign of the score. */
const binary = (i: InsightFields) =>
  i.sentiment === 'positive' || i.sentiment === 'negative' ? i.sentiment : i.sentiment_score > 0 ? 'positive' : 'negative'
/** TweetEval has no "mixed": a conversation with both feelings is neither positive nor negative. */
const threeWay = (i: InsightFields) => (i.sentiment === 'mixed' ? 'neutral' : i.sentiment)

export interface Report {
  sst2: Figures
  tweeteval: Figures
  intent: Figures
  dialogues: { n: number; complaints: number; complaintsPositive: number; asExpected: number; rouge1: number; rougeL: number }
  perDialogue: { id: string; sentiment: string; summary: string }[]
}

export async function evaluate(
  source: InsightSource,
  data: { sst2: Example<string>[]; tweeteval: Example<string>[]; intent: Example<string>[] },
  dialogues: Dialogue[]
): Promise<Report> {
  const sstOut = await source(data.sst2.map((e) => single(e.text)))
  const tweetOut = await source(data.tweeteval.map((e) => single(e.text)))
  const intentOut = await source(data.intent.map((e) => single(e.text)))
  const dialogueOut = await source(dialogues.map((d) => d.messages))
  const complaints = dialogues.map((d, i) => ({ d, i })).filter(({ d }) => d.kind === 'complaint')
  let r1 = 0
  let rl = 0
  dialogues.forEach((d, i) => {
    const r = rouge(dialogueOut[i]!.summary, d.reference)
    r1 += r.rouge1
    rl += r.rougeL
  })
  return {
    sst2: classificationFigures(
      data.sst2.map((e) => e.label),
      sstOut.map(binary),
      ['negative', 'positive']
    ),
    tweeteval: classificationFigures(
      data.tweeteval.map((e) => e.label),
      tweetOut.map(threeWay),
      ['negative', 'neutral', 'positive']
    ),
    intent: classificationFigures(
      data.intent.map((e) => e.label),
      intentOut.map((i) => i.intent),
      INTENTS
    ),
    dialogues: {
      n: dialogues.length,
      complaints: complaints.length,
      complaintsPositive: complaints.filter(({ i }) => dialogueOut[i]!.sentiment === 'positive').length,
      asExpected: dialogues.filter((d, i) => d.expect.includes(dialogueOut[i]!.sentiment)).length,
      rouge1: r1 / dialogues.length,
      rougeL: rl / dialogues.length
    },
    perDialogue: dialogues.map((d, i) => ({ id: d.id, sentiment: dialogueOut[i]!.sentiment, summary: dialogueOut[i]!.summary }))
  }
}

/**
 * The baseline a summary must beat: the first two sentences of the customer's first message,
 * as written (the review found it beat the old analyzer's summaries).
 */
export function leadTwoBaseline(dialogues: Dialogue[]): { rouge1: number; rougeL: number } {
  let r1 = 0
  let rl = 0
  for (const d of dialogues) {
    const first = d.messages.find((m) => CUSTOMER_ROLES.has(m.role) && m.content.trim())?.content ?? ''
    const lead = first.trim().split(/(?<=[.!?])\s+/).slice(0, 2).join(' ')
    const r = rouge(lead, d.reference)
    r1 += r.rouge1
    rl += r.rougeL
  }
  return { rouge1: r1 / dialogues.length, rougeL: rl / dialogues.length }
}

/** Conversations per second over the bench's workload (4 messages, ~400 bytes each), after a warm-up. */
export async function analyzerSpeed(analyzer: Analyzer, n: number): Promise<number> {
  const items = Array.from({ length: n }, (_, i) => ({ id: String(i), source: 'speed', messages: conversationFor(i).messages as Message[] }))
  await analyzer.analyzeBatch(items.slice(0, 200))
  const started = performance.now()
  for (let i = 0; i < items.length; i += 100) await analyzer.analyzeBatch(items.slice(i, i + 100))
  return n / ((performance.now() - started) / 1000)
}

/** The models alone (argmax of their probabilities), to separate model quality from the rules around them. */
function modelFigures(data: { sst2: Example<string>[]; tweeteval: Example<string>[]; intent: Example<string>[] }) {
  const dir = new URL('../src/analyzers/models/', import.meta.url)
  const sentiment = loadLinearModel(dir, 'sentiment')
  const intent = loadLinearModel(dir, 'intent')
  const argmax = (p: Float64Array, classes: readonly string[]) => {
    let best = 0
    for (let c = 1; c < p.length; c++) if (p[c]! > p[best]!) best = c
    return classes[best]!
  }
  const sst = data.sst2.map((e) => {
    const p = sentiment.predict(e.text)
    return p[2]! > p[0]! ? 'positive' : 'negative'
  })
  return {
    sst2: classificationFigures(
      data.sst2.map((e) => e.label),
      sst,
      ['negative', 'positive']
    ),
    tweeteval: classificationFigures(
      data.tweeteval.map((e) => e.label),
      data.tweeteval.map((e) => argmax(sentiment.predict(e.text), sentiment.classes)),
      ['negative', 'neutral', 'positive']
    ),
    intent: classificationFigures(
      data.intent.map((e) => e.label),
      data.intent.map((e) => argmax(intent.predict(e.text), intent.classes)),
      INTENTS
    )
  }
}

const f2 = (x: number) => x.toFixed(3)

function table(rows: { name: string; report: Report; speed?: number }[], models?: ReturnType<typeof modelFigures>): string {
  const lines = [
    `| analyzer | SST-2 acc | TweetEval macro-recall | TweetEval acc | intent macro-F1 | intent acc | min intent recall | complaint dialogues read positive | dialogues as expected | summary ROUGE-1 / ROUGE-L | conv/s |`,
    '|---|---|---|---|---|---|---|---|---|---|---|'
  ]
  for (const { name, report: r, speed } of rows) {
    const supported = Object.entries(r.intent.perClass).filter(([, c]) => c.support > 0)
    const minRecall = Math.min(...supported.map(([, c]) => c.recall))
    const worst = supported.find(([, c]) => c.recall === minRecall)?.[0]
    lines.push(
      `| ${name} | ${f2(r.sst2.accuracy)} | ${f2(r.tweeteval.macroRecall)} | ${f2(r.tweeteval.accuracy)} | ${f2(r.intent.macroF1)} | ${f2(r.intent.accuracy)} | ${f2(minRecall)} (${worst}) | ${r.dialogues.complaintsPositive} of ${r.dialogues.complaints} | ${r.dialogues.asExpected} of ${r.dialogues.n} | ${f2(r.dialogues.rouge1)} / ${f2(r.dialogues.rougeL)} | ${speed ? Math.round(speed).toLocaleString('en-US') : '—'} |`
    )
  }
  if (models) {
    lines.push(
      `| the models alone (argmax, no rules) | ${f2(models.sst2.accuracy)} | ${f2(models.tweeteval.macroRecall)} | ${f2(models.tweeteval.accuracy)} | ${f2(models.intent.macroF1)} | ${f2(models.intent.accuracy)} | — | — | — | — | — |`
    )
  }
  return lines.join('\n')
}

function perClassTable(before: Figures, after: Figures): string {
  const lines = ['| intent | support | recall before | recall now | F1 before | F1 now |', '|---|---|---|---|---|---|']
  for (const label of INTENTS) {
    const b = before.perClass[label]!
    const a = after.perClass[label]!
    if (!a.support && !a.precision && !b.precision) continue
    lines.push(`| ${label} | ${a.support} | ${f2(b.recall)} | ${f2(a.recall)} | ${f2(b.f1)} | ${f2(a.f1)} |`)
  }
  return lines.join('\n')
}

function confusionTable(f: Figures): string {
  const used = f.confusion.labels.filter((_, i) => f.confusion.rows[i]!.some((v) => v) || f.confusion.rows.some((row) => row[i]))
  const idx = used.map((l) => f.confusion.labels.indexOf(l))
  const lines = [`| truth \\ predicted | ${used.join(' | ')} |`, `|---|${used.map(() => '---').join('|')}|`]
  for (const i of idx) {
    if (!f.confusion.rows[i]!.some((v) => v)) continue
    lines.push(`| ${f.confusion.labels[i]} | ${idx.map((j) => f.confusion.rows[i]![j]).join(' | ')} |`)
  }
  return lines.join('\n')
}

/** The same evaluation through the public API: batches POSTed over HTTP, insights read back by source. */
export async function viaApi(): Promise<{ source: InsightSource; close: () => Promise<void> }> {
  const pino = (await import('pino')).default
  const { buildApp } = await import('../src/app.ts')
  const { loadConfig } = await import('../src/config.ts')
  // the prefilter is off so every item gets an insight (it would skip two-word SST-2 phrases)
  const config = loadConfig({ AUTH: 'off', DATA_DIR: 'memory://', LOG_LEVEL: 'silent', PREFILTER_ENABLED: 'false', SWEEP_INTERVAL_MS: '50' })
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) } as never)
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  let run = 0
  const source: InsightSource = async (conversations) => {
    const src = `eval-${++run}`
    const ids: string[] = []
    for (let i = 0; i < conversations.length; i += 500) {
      const body = {
        conversations: conversations.slice(i, i + 500).map((messages, k) => ({ source: src, external_id: `${i + k}`, messages }))
      }
      const res = await fetch(`${address}/api/v1/conversations/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body)
      })
      const out = (await res.json()) as { results: { id?: string; error?: unknown }[] }
      if (res.status !== 207) throw new Error(`batch ingest answered ${res.status}: ${JSON.stringify(out).slice(0, 300)}`)
      for (const r of out.results) {
        if (!r.id) throw new Error(`an item was rejected: ${JSON.stringify(r.error)}`)
        ids.push(r.id)
      }
    }
    const byId = new Map<string, InsightFields>()
    // the worker drains in the background; read pages until every id has its insight
    while (byId.size < ids.length) {
      let cursor: string | null = null
      byId.clear()
      do {
        const url = `${address}/api/v1/insights?source=${src}&limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
        const page = (await (await fetch(url)).json()) as { items: (InsightFields & { conversation_id: string; model: string })[]; next_cursor: string | null }
        for (const item of page.items) {
          if (item.model !== LOCAL_MODEL) throw new Error(`insight from ${item.model}, expected ${LOCAL_MODEL}`)
          byId.set(item.conversation_id, item)
        }
        cursor = page.next_cursor
      } while (cursor)
      if (byId.size < ids.length) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    return ids.map((id) => byId.get(id)!)
  }
  return { source, close: () => app.close() }
}

async function main() {
  const { values } = parseArgs({
    options: { data: { type: 'string' }, api: { type: 'boolean' }, json: { type: 'string' }, speed: { type: 'string' }, validate: { type: 'boolean' } }
  })
  const dataDir = values.data ?? process.env.GLEANER_DATA_DIR
  if (!dataDir) {
    console.error('usage: npm run eval -- --data DIR [--api] [--json FILE] [--speed N] [--validate]   (or GLEANER_DATA_DIR=DIR)')
    process.exit(2)
  }
  const loaded = loadDatasets(dataDir)
  const data = { sst2: loaded.sentimentDev.sst2!, tweeteval: loaded.sentimentDev.tweeteval!, intent: loaded.intentDev }
  const dialogues = loadDialogues()
  const speedN = Number(values.speed ?? 5_000)
  console.error(`[eval] dev: SST-2 ${data.sst2.length}, TweetEval ${data.tweeteval.length}, intent ${data.intent.length}, dialogues ${dialogues.length}`)

  const before = createBaselineAnalyzer()
  const after = createLocalAnalyzer()
  const rows: { name: string; report: Report; speed?: number }[] = []
  rows.push({ name: 'local-lexicon-v1 (before)', report: await evaluate(viaAnalyzer(before), data, dialogues), speed: await analyzerSpeed(before, speedN) })
  rows.push({ name: `${LOCAL_MODEL} (now)`, report: await evaluate(viaAnalyzer(after), data, dialogues), speed: await analyzerSpeed(after, speedN) })
  if (values.api) {
    const api = await viaApi()
    try {
      rows.push({ name: `${LOCAL_MODEL} through the API`, report: await evaluate(api.source, data, dialogues) })
    } finally {
      await api.close()
    }
  }
  // --validate: the validation side, where changes are tried; the held-out dialogues are test only
  const side = values.validate ? 'validation' : 'test'
  const heldOut = values.validate ? [] : loadHeldOutDialogues()
  const ood: { name: string; report: OodReport }[] = [
    { name: 'local-lexicon-v1 (before)', report: await evaluateOutOfDistribution(untrained(before), loaded, heldOut, side) },
    { name: `${LOCAL_MODEL} (now)`, report: await evaluateOutOfDistribution(retrainedLocal(), loaded, heldOut, side) }
  ]
  const loadStarted = performance.now()
  loadLinearModel(new URL('../src/analyzers/models/', import.meta.url), 'sentiment')
  loadLinearModel(new URL('../src/analyzers/models/', import.meta.url), 'intent')
  const loadMs = performance.now() - loadStarted
  const models = modelFigures(data)
  const lead = leadTwoBaseline(dialogues)
  const out = [
    `Dev splits: SST-2 ${data.sst2.length} (GLUE dev), TweetEval ${data.tweeteval.length} (our hash split), intent ${data.intent.length} (our hash split of banking77 + Bitext), dialogues ${dialogues.length} (eval/fixtures); speed on ${speedN.toLocaleString('en-US')} bench conversations, one core`,
    '',
    table(rows, models),
    '',
    `Summary baseline, the first two sentences of the customer's first message: ROUGE-1 / ROUGE-L ${f2(lead.rouge1)} / ${f2(lead.rougeL)}.`,
    '',
    `Out of distribution (${side} side): each intent column retrains both models without the dataset it tests; each sentiment column retrains the sentiment model on the other set; ${heldOut.length} held-out dialogues (eval/fixtures/dialogues-heldout.json) with the shipped models.`,
    '',
    oodTable(ood, heldOut),
    '',
    `Loading both models: ${loadMs.toFixed(0)} ms.`,
    '',
    perClassTable(rows[0]!.report.intent, rows[1]!.report.intent),
    '',
    `Confusion matrix, ${LOCAL_MODEL}, intent dev split:`,
    '',
    confusionTable(rows[1]!.report.intent),
    '',
    'Dialogues (now):',
    '',
    ...rows[1]!.report.perDialogue.map((d) => `- ${d.id}: ${d.sentiment} — ${d.summary}`)
  ].join('\n')
  console.log(out)
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ rows, models, ood }, null, 2)}\n`)
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
