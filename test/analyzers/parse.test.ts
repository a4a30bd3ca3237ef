import t from 'tap'
import { extractJson, parseInsightsAnswer, repairJson, validateInsight } from '../../src/analyzers/parse.ts'

const item = (index: number, over: Record<string, unknown> = {}) => ({
  index,
  sentiment: 'negative',
  sentiment_score: -0.6,
  topics: ['billing'],
  intent: 'complaint',
  urgency: 'high',
  summary: 'Customer reports a wrong invoice.',
  language: 'en',
  ...over
})
const wrapped = (...items: unknown[]) => JSON.stringify({ insights: items }, null, 2)

t.test('clean wrapper object is read by index', async (t) => {
  const r = parseInsightsAnswer(wrapped(item(1), item(0, { sentiment: 'positive', sentiment_score: 0.8 })), 2)
  t.equal(r.parseError, undefined)
  t.same(r.invalid, [])
  t.equal(r.byIndex.get(0)?.sentiment, 'positive')
  t.equal(r.byIndex.get(1)?.sentiment, 'negative')
  t.same(r.byIndex.get(1), {
    sentiment: 'negative',
    sentiment_score: -0.6,
    topics: ['billing'],
    intent: 'complaint',
    urgency: 'high',
    summary: 'Customer reports a wrong invoice.',
    language: 'en'
  })
})

t.test('code fences are stripped', async (t) => {
  const r = parseInsightsAnswer('```json\n' + wrapped(item(0)) + '\n```', 1)
  t.equal(r.parseError, undefined)
  t.equal(r.byIndex.size, 1)
  const bare = parseInsightsAnswer('```\n' + wrapped(item(0)) + '```', 1)
  t.equal(bare.byIndex.size, 1, 'fence without a language tag')
})

t.test('JSON is found among surrounding prose', async (t) => {
  const text = `Sure! Here is {what you asked}: ${wrapped(item(0), item(1))}\nHope this helps {really}.`
  const r = parseInsightsAnswer(text, 2)
  t.equal(r.parseError, undefined)
  t.equal(r.byIndex.size, 2)
})

t.test('trailing commas are repaired, commas inside strings are kept', async (t) => {
  const text = '{"insights": [{"index": 0, "sentiment": "neutral", "sentiment_score": 0, "topics": ["a", "b",], "intent": "question", "urgency": "low", "summary": "Asks, ], about hours.",},],}'
  const r = parseInsightsAnswer(text, 1)
  t.equal(r.parseError, undefined)
  t.same(r.byIndex.get(0)?.topics, ['a', 'b'])
  t.equal(r.byIndex.get(0)?.summary, 'Asks, ], about hours.')
})

t.test('citation marks outside strings are removed, those inside strings are kept', async (t) => {
  const text =
    '{"insights": [{"index": 0, "sentiment": "neutral", "sentiment_score": 0, "topics": [] [1], "intent": "question", ' +
    '"urgency": "low", "summary": "See section [2] of the FAQ." [3][4, 5]}【1†source】]【2】}'
  const r = parseInsightsAnswer(text, 1)
  t.equal(r.parseError, undefined)
  t.equal(r.byIndex.get(0)?.summary, 'See section [2] of the FAQ.')
  t.equal(repairJson('{"a": "x [1]"} [^2]'), '{"a": "x [1]"} ')
})

t.test('a bare array is accepted', async (t) => {
  const r = parseInsightsAnswer(JSON.stringify([item(0), item(1)]), 2)
  t.equal(r.parseError, undefined)
  t.equal(r.byIndex.size, 2)
})

t.test('a single bare item answers a batch of one', async (t) => {
  const r = parseInsightsAnswer(JSON.stringify(item(0)), 1)
  t.equal(r.byIndex.size, 1)
})

t.test('a renamed wrapper key is accepted', async (t) => {
  const r = parseInsightsAnswer(JSON.stringify({ results: [item(0)] }), 1)
  t.equal(r.byIndex.size, 1)
})

t.test('garbage yields parseError, never a throw', async (t) => {
  for (const text of [
    "I'm sorry, I can't help with that.",
    '',
    '{{{{',
    '[[[[',
    '}{][',
    '{"insights": [',
    '42',
    'null',
    '{"foo": 1}',
    '\u0000\uffff',
    '['.repeat(10_000),
    undefined as unknown as string
  ]) {
    const r = parseInsightsAnswer(text, 3)
    t.ok(r.parseError, `parseError for ${JSON.stringify(text)?.slice(0, 20)}`)
    t.equal(r.byIndex.size, 0)
  }
})

t.test('items with an invalid enum or missing field are reported invalid, the rest kept', async (t) => {
  const r = parseInsightsAnswer(
    wrapped(
      item(0, { sentiment: 'furious' }),
      item(1),
      item(2, { urgency: 'whenever' }),
      item(3, { summary: '   ' }),
      item(4, { sentiment_score: 'lots' }),
      { index: 5 },
      'not an object'
    ),
    6
  )
  t.equal(r.parseError, undefined)
  t.same([...r.byIndex.keys()], [1])
  t.same(r.invalid, [0, 2, 3, 4, 5])
})

t.test('enum values are matched case-insensitively', async (t) => {
  const r = parseInsightsAnswer(wrapped(item(0, { sentiment: ' Positive ', urgency: 'LOW' })), 1)
  t.equal(r.byIndex.get(0)?.sentiment, 'positive')
  t.equal(r.byIndex.get(0)?.urgency, 'low')
})

t.test('scores are clamped to [-1, 1] and into their label\'s band; numeric strings are accepted', async (t) => {
  const r = parseInsightsAnswer(
    wrapped(
      item(0, { sentiment: 'positive', sentiment_score: 3 }),
      item(1, { sentiment_score: -7.5 }),
      item(2, { sentiment: 'neutral', sentiment_score: '0.25' }),
      item(3, { sentiment: 'positive', sentiment_score: -0.6 }),
      item(4, { sentiment: 'negative', sentiment_score: 0.7 }),
      item(5, { sentiment: 'neutral', sentiment_score: -0.9 })
    ),
    6
  )
  t.equal(r.byIndex.get(0)?.sentiment_score, 1)
  t.equal(r.byIndex.get(1)?.sentiment_score, -1)
  t.equal(r.byIndex.get(2)?.sentiment_score, 0.25)
  t.equal(r.byIndex.get(3)?.sentiment_score, 0.05, 'a positive label never carries a negative score')
  t.equal(r.byIndex.get(4)?.sentiment_score, -0.05, 'a negative label never carries a positive score')
  t.equal(r.byIndex.get(5)?.sentiment_score, -0.35, 'neutral stays near zero')
  t.equal(r.byIndex.get(3)?.sentiment, 'positive', 'the label is the decision; only the score moves')
})

t.test('intents are mapped onto the taxonomy: case, spacing, synonyms, anything else other', async (t) => {
  const intent = (label: unknown) => validateInsight(item(0, { intent: label }))?.intent
  t.equal(intent('Refund Request'), 'refund_request')
  t.equal(intent('bug-report'), 'bug_report')
  t.equal(intent('  ACCOUNT_HELP '), 'account_help')
  t.equal(intent('request_refund'), 'refund_request')
  t.equal(intent('login issue'), 'account_help')
  t.equal(intent('billing inquiry'), 'other')
  t.equal(intent('Y'.repeat(500)), 'other', 'a long invented label is other, not stored')
  t.equal(validateInsight(item(0, { intent: '' })), null, 'an empty intent is not guessed')
  t.equal(validateInsight(item(0, { intent: 7 })), null, 'a non-string intent is not guessed')
})

t.test('topics are lower-cased, trimmed, deduplicated and capped at 10', async (t) => {
  const topics = ['Billing', ' billing ', 'LOGIN', 7, '', ...Array.from({ length: 20 }, (_, i) => `t${i}`)]
  const insight = validateInsight(item(0, { topics }))
  t.same(insight?.topics, ['billing', 'login', 't0', 't1', 't2', 't3', 't4', 't5', 't6', 't7'])
  t.same(validateInsight(item(0, { topics: 'Refund, Shipping' }))?.topics, ['refund', 'shipping'], 'comma-separated string')
  t.same(validateInsight(item(0, { topics: undefined }))?.topics, [], 'missing topics → none')
})

t.test('long strings are trimmed to sane lengths', async (t) => {
  const insight = validateInsight(item(0, { summary: 'x'.repeat(5_000), topics: ['z'.repeat(500)] }))
  t.ok(insight)
  t.ok(insight!.summary.length <= 1_000)
  t.ok(insight!.topics[0]!.length <= 40)
})

t.test('language defaults to und and keeps the ISO 639-1 part of a tag', async (t) => {
  t.equal(validateInsight(item(0, { language: undefined }))?.language, 'und')
  t.equal(validateInsight(item(0, { language: 'English' }))?.language, 'und')
  t.equal(validateInsight(item(0, { language: 'en-US' }))?.language, 'en')
  t.equal(validateInsight(item(0, { language: 'FR' }))?.language, 'fr')
})

t.test('indexes out of range are ignored, a repeated index lands nowhere, string indexes are read', async (t) => {
  const r = parseInsightsAnswer(
    wrapped(item(0), item(0, { sentiment: 'positive' }), item(9), item(-1), item('1' as unknown as number)),
    2
  )
  t.notOk(r.byIndex.has(0), 'two answers for one conversation: neither is trusted')
  t.same(r.invalid, [0], 'the repeated index is re-asked')
  t.ok(r.byIndex.has(1))
  t.equal(r.byIndex.size, 1)
})

t.test('items without any index are taken in order when their count matches exactly', async (t) => {
  const { index: _a, ...first } = item(0, { sentiment: 'positive' })
  const { index: _b, ...second } = item(1)
  const r = parseInsightsAnswer(JSON.stringify({ insights: [first, second] }), 2)
  t.equal(r.byIndex.get(0)?.sentiment, 'positive')
  t.equal(r.byIndex.get(1)?.sentiment, 'negative')
  t.equal(r.adjustments.positionalMismatch, 0)
})

t.test('items without any index and one missing are not matched by position at all', async (t) => {
  const { index: _a, ...first } = item(0, { sentiment: 'positive' })
  const { index: _b, ...second } = item(1)
  const r = parseInsightsAnswer(JSON.stringify({ insights: [first, second] }), 3)
  t.equal(r.byIndex.size, 0, 'a dropped item would shift every later insight onto the wrong conversation')
  t.equal(r.adjustments.positionalMismatch, 1)
  t.notOk(r.parseError, 'the answer parsed; its items are re-asked')
})

t.test('unknown intents and out-of-band scores are counted as corrections', async (t) => {
  const r = parseInsightsAnswer(
    wrapped(item(0, { intent: 'billing inquiry' }), item(1, { intent: 'Refund', sentiment: 'positive', sentiment_score: -0.8 }), item(2)),
    3
  )
  t.equal(r.byIndex.get(0)?.intent, 'other')
  t.equal(r.byIndex.get(1)?.intent, 'refund_request')
  t.equal(r.byIndex.get(1)?.sentiment_score, 0.05)
  t.same(r.adjustments, { unknownIntent: 1, scoreClamped: 1, positionalMismatch: 0 })
})

t.test('extractJson prefers the insight list over earlier JSON in prose', async (t) => {
  const value = extractJson(`Config used: {"temperature": 0}. Answer: ${wrapped(item(0))}`)
  t.ok(Array.isArray((value as { insights?: unknown }).insights))
})

t.test('repair keeps the two rules apart from strings in one pass: a citation before a trailing comma, escapes', async (t) => {
  t.equal(repairJson('{"a": ["x"] [3],}'), '{"a": ["x"] }')
  t.equal(repairJson('{"a": "q \\" [1] ,}", "b": 1 ,【2†x】 }'), '{"a": "q \\" [1] ,}", "b": 1  }')
  t.equal(repairJson('[{"a": 1}, ]'), '[{"a": 1} ]')
  t.equal(repairJson('{"unterminated": "abc, ]'), '{"unterminated": "abc, ]', 'an open string runs to the end')
})

// A super-linear scanner would run for minutes here and the suite's timeout would fail it;
// 1 MB is far above a real answer (a 100-conversation batch answers in about 50 KB).
t.test('hostile answers of 1 MB are handled without a throw', async (t) => {
  const MB = 1_000_000
  const hostile: Record<string, string> = {
    'open brackets': '['.repeat(MB),
    'open braces': '{'.repeat(MB),
    'commas and spaces': `[${', '.repeat(MB / 2)}]`,
    'citations': `{"insights": [${'[1]'.repeat(MB / 3)}]}`,
    'citation openers': '【'.repeat(MB),
    'quotes': '"'.repeat(MB),
    'escapes in a string': `{"a": "${'\\'.repeat(MB)}`,
    'backticks': '`'.repeat(MB),
    'fence openers': '```json\n{'.repeat(MB / 9),
    'many small objects': '{"a":1} '.repeat(MB / 8)
  }
  for (const [name, text] of Object.entries(hostile)) {
    const r = parseInsightsAnswer(text, 3)
    t.equal(r.byIndex.size, 0, name)
  }
})
