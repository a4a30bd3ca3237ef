// Every function that runs regexes or scanners over client text, fed adversarial text at the
// contract's limits (32,000-character messages, 500 of them). Linearity is shown by the
// growth of the same function's time from n to 4n in the same run (linear ≈ 4×, quadratic
// 16×, the old address pattern 64×), not by a wall-clock threshold.

import t from 'tap'
import { analyzeConversation, loadEngines } from '../../src/analyzers/local.ts'
import { extractJson } from '../../src/analyzers/parse.ts'
import { featureTokens } from '../../src/analyzers/text-features.ts'
import { loadConfig } from '../../src/config.ts'
import type { Message } from '../../src/domain.ts'
import { findPii } from '../../src/pii.ts'
import { normalizeText } from '../../src/pipeline/normalize.ts'
import { prefilter, prefilterOptionsFrom } from '../../src/pipeline/prefilter.ts'

const config = loadConfig({})
const MAX_CHARS = config.MAX_CONTENT_CHARS
const MAX_MESSAGES = config.MAX_MESSAGES
/** Linear work grows 4× from n to 4n; quadratic grows 16×. The slack absorbs a busy machine. */
const MAX_GROWTH = 9
const SMALL = 2_000
const LARGE = SMALL * 4
/** Below this, a run is too short to time: it cannot freeze anything at the contract's size. */
const NEGLIGIBLE_MS = 15
const REPEATS = 3

/** Repeated units that make backtracking patterns try every split: each is repeated to length n. */
const UNITS = ['@', '@.', 'a@', 'a@a.', '.', '\n', ' ', '\t', '. ', '.\n', 'http://', 'www.', '```', '{', '[', '{"a":', '"', '\\', 'a', '1', '1 ', '-', '+1', '😡', "can't ", 'my name is A', 'Hi ', ' ,', '? ']
const adversarial = (unit: string, n: number) => unit.repeat(Math.ceil(n / unit.length)).slice(0, n)

const prefilterOptions = prefilterOptionsFrom(config)
const engines = await loadEngines()
const user = (content: string): Message => ({ role: 'user', content })

const SCANNERS: Record<string, (text: string) => unknown> = {
  prefilter: (text) => prefilter([user(text)], prefilterOptions),
  normalizeText: (text) => normalizeText([user(text)]),
  findPii: (text) => findPii(text),
  'local analyzer': (text) => analyzeConversation(engines, [user(text)]),
  featureTokens: (text) => featureTokens(text),
  'answer parser': (text) => extractJson(text)
}

function fastestMs(fn: () => unknown): number {
  let best = Number.POSITIVE_INFINITY
  for (let i = 0; i < REPEATS; i++) {
    const started = process.hrtime.bigint()
    fn()
    best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e6)
  }
  return best
}

for (const [name, scan] of Object.entries(SCANNERS)) {
  t.test(`${name} grows linearly on adversarial text`, async (t) => {
    for (const unit of UNITS) {
      const small = fastestMs(() => scan(adversarial(unit, SMALL)))
      const large = fastestMs(() => scan(adversarial(unit, LARGE)))
      const growth = large / Math.max(small, 0.05)
      t.ok(large < NEGLIGIBLE_MS || growth < MAX_GROWTH, `${JSON.stringify(unit)}: ${small.toFixed(2)} ms → ${large.toFixed(2)} ms (${growth.toFixed(1)}×)`)
    }
  })
}

t.test('the prefilter and normaliser finish 500 messages of 32,000 adversarial characters', async (t) => {
  for (const unit of ['@', 'a@a.', '\n', 'http://']) {
    const messages = Array.from({ length: MAX_MESSAGES }, () => user(adversarial(unit, MAX_CHARS)))
    const verdict = prefilter(messages, prefilterOptions)
    t.ok(verdict, `${JSON.stringify(unit)}: prefilter answered`)
    t.ok(normalizeText(messages).length > 0 || unit.trim() === '', `${JSON.stringify(unit)}: normalised`)
  }
})

t.test('an address-like token is still removed before counting words', async (t) => {
  const only = (content: string) => prefilter([user(content)], { ...prefilterOptions, minUserWords: 1, minUserChars: 1 })
  t.same(only('jane.doe@example.com'), { skip: true, reason: 'too_short' }, 'an address alone has no words')
  t.same(only('mail jane@example.com'), { skip: false }, 'the words around it count')
  t.same(only('@@@ @.@'), { skip: true, reason: 'too_short' }, 'symbols alone are not words')
  t.same(only('a@b'), { skip: false }, 'no dot after the @: not an address, its letters count')
})
