import t from 'tap'
import type { AnalysisInput } from '../../src/analyzers/analyzer.ts'
import { createLocalAnalyzer } from '../../src/analyzers/local.ts'
import { INTENTS, type InsightFields, type Message, SENTIMENTS, URGENCIES } from '../../src/domain.ts'

const user = (content: string): Message => ({ role: 'user', content })
const assistant = (content: string): Message => ({ role: 'assistant', content })

let seq = 0
const conversation = (...messages: Message[]): AnalysisInput => ({ id: `c${++seq}`, source: 'test', messages })

/** Analyses one conversation through the public interface and returns its insight. */
async function analyse(...messages: Message[]): Promise<InsightFields> {
  const analyzer = createLocalAnalyzer()
  const { results } = await analyzer.analyzeBatch([conversation(...messages)])
  const [result] = results
  if (!result?.ok) throw new Error(`analysis failed: ${JSON.stringify(result)}`)
  return result.insight
}

/** Every way an insight can break the contract, as readable strings: an empty list means valid. */
function contractViolations(insight: InsightFields): string[] {
  const problems: string[] = []
  if (!SENTIMENTS.includes(insight.sentiment)) problems.push(`sentiment ${insight.sentiment} not in the enum`)
  const score = insight.sentiment_score
  if (!Number.isFinite(score) || score < -1 || score > 1) problems.push(`score ${score} outside [-1, 1]`)
  if (insight.topics.length > 10) problems.push(`${insight.topics.length} topics`)
  if (!insight.topics.every((topic) => topic.length > 0 && topic === topic.toLowerCase())) problems.push('a topic is empty or not lower-case')
  if (new Set(insight.topics).size !== insight.topics.length) problems.push('duplicate topics')
  if (!(INTENTS as readonly string[]).includes(insight.intent)) problems.push(`intent ${insight.intent} not in the set`)
  if (!URGENCIES.includes(insight.urgency)) problems.push(`urgency ${insight.urgency} not in the enum`)
  if (insight.summary.length === 0 || insight.summary.length > 280) problems.push(`summary of ${insight.summary.length} characters`)
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(insight.summary)) problems.push('lone surrogate in summary')
  if (!/^([a-z]{2}|und)$/.test(insight.language)) problems.push(`language ${insight.language}`)
  return problems
}

t.test('identifies itself as the free local analyzer and reports zero cost for every item', async (t) => {
  const analyzer = createLocalAnalyzer()
  t.teardown(() => analyzer.close())
  t.equal(analyzer.model, 'local-lexicon-v1')
  t.equal(analyzer.promptVersion, 'v1')
  t.equal(analyzer.billable, false)
  await t.resolves(analyzer.ping(), 'ping resolves')

  const items = [conversation(user('My invoice is wrong.')), conversation(user('Thanks, all good!'))]
  const batch = await analyzer.analyzeBatch(items)
  t.same(batch.usage, { input: 0, output: 0, cost_usd: 0, calls: 0 })
  t.same(
    batch.results.map((r) => r.id),
    items.map((i) => i.id),
    'one result per item, in order'
  )
  for (const r of batch.results) {
    t.equal(r.ok, true)
    if (r.ok) {
      t.same(r.tokens, { input: 0, output: 0 })
      t.equal(r.cost_usd, 0)
    }
  }
  await t.resolves(analyzer.close(), 'close resolves')
})

t.test('a complaint about a wrong invoice is negative, filed under billing and invoice, intent complaint', async (t) => {
  const insight = await analyse(
    user('My invoice is wrong. You charged me twice this month and nobody answers my emails. This is unacceptable!'),
    assistant('I am sorry to hear that, let me check your account.')
  )
  t.equal(insight.sentiment, 'negative')
  t.ok(insight.sentiment_score < -0.15, `score ${insight.sentiment_score} is below -0.15`)
  t.same(insight.topics.slice(0, 2), ['billing', 'invoice'], 'lexicon topics come first')
  t.equal(insight.intent, 'complaint')
  t.equal(insight.urgency, 'medium', 'a complaint is at least medium')
  t.equal(insight.language, 'en')
})

t.test('praise is positive with intent praise and low urgency', async (t) => {
  const insight = await analyse(
    user('Thank you so much, the new dashboard is amazing and your team was super helpful!'),
    assistant('Glad to hear it!')
  )
  t.equal(insight.sentiment, 'positive')
  t.ok(insight.sentiment_score > 0.15, `score ${insight.sentiment_score} is above 0.15`)
  t.equal(insight.intent, 'praise')
  t.equal(insight.urgency, 'low')
  t.ok(insight.topics.includes('dashboard'), 'a frequent noun becomes a topic')
})

t.test('clearly positive and clearly negative user sentences make the sentiment mixed', async (t) => {
  const insight = await analyse(
    user('I love the new dashboard, it is fantastic.'),
    assistant('Thanks for the feedback!'),
    user('But the billing page is terrible and the export is broken.')
  )
  t.equal(insight.sentiment, 'mixed')
  t.equal(insight.urgency, 'medium', 'the unhappy half still asks for attention')
})

t.test('a courtesy "thanks" does not turn a complaint into a mixed or neutral one', async (t) => {
  const insight = await analyse(user('I was charged twice for the same month. This is terrible. Thanks.'))
  t.equal(insight.sentiment, 'negative')
})

t.test('user messages weigh more than assistant messages in the sentiment', async (t) => {
  const cheerfulBot = await analyse(
    user('How do I export my data to a spreadsheet?'),
    assistant('Great question! I love helping with this, it is wonderful and easy!')
  )
  t.equal(cheerfulBot.sentiment, 'neutral', 'a cheerful assistant does not make a neutral question positive')
  const apologeticBot = await analyse(user('I love this product, it is fantastic!'), assistant('Sorry, that is terrible news, awful.'))
  t.equal(apologeticBot.sentiment, 'positive', "the user's opinion wins")
})

t.test('system and tool messages are ignored', async (t) => {
  const insight = await analyse(
    { role: 'system', content: 'URGENT: the customer wants a refund, they called a lawyer, this is terrible!' },
    { role: 'tool', content: 'outage detected, chargeback filed' },
    user('How do I export my data to CSV?')
  )
  t.equal(insight.urgency, 'low')
  t.equal(insight.intent, 'question')
  t.equal(insight.sentiment, 'neutral')
  t.notOk(insight.topics.includes('refund'), 'system text adds no topics')
})

t.test('an outage is high urgency', async (t) => {
  const insight = await analyse(user('Your service is down and we cannot access anything. Our whole team is blocked.'))
  t.equal(insight.urgency, 'high')
})

t.test('urgency words, legal threats and angry exclamations are high; a calm question is low', async (t) => {
  t.equal((await analyse(user('Please reset my password asap.'))).urgency, 'high', 'asap')
  t.equal((await analyse(user('If this is not fixed I will talk to my lawyer.'))).urgency, 'high', 'lawyer')
  t.equal((await analyse(user("I can't access my account and I need it now."))).urgency, 'high', "can't access")
  t.equal((await analyse(user('This is the worst service ever!!! Absolutely awful!!! I hate it!!!'))).urgency, 'high', 'angry exclamations')
  t.equal((await analyse(user('How do I export my data to CSV?'))).urgency, 'low', 'calm question')
})

t.test('intent follows the documented precedence', async (t) => {
  const cases: [string, string][] = [
    ['This is terrible, the invoice is wrong and I want a refund.', 'refund_request'],
    ['Please cancel my subscription at the end of the month.', 'cancellation'],
    ["I can't log in, it says my password is wrong and shows an error.", 'account_help'],
    ['The app crashes every time I open the settings page.', 'bug_report'],
    ['It would be great if you could add a dark mode.', 'feature_request'],
    ['I am looking to buy the premium plan, how much is it?', 'purchase'],
    ['Where can I find the API documentation?', 'question'],
    ['My order number is 1234.', 'other']
  ]
  for (const [text, intent] of cases) t.equal((await analyse(user(text))).intent, intent, text)
})

t.test('topics: at most 10, lower-case, lexicon hits first, idioms and greetings skipped', async (t) => {
  const many = await analyse(
    user(
      'My invoice and refund, the payment and pricing of the subscription, the cancellation, my login, ' +
        'account and password, a bug and a crash, slow performance, shipping, delivery and my order, a return, ' +
        'the API integration, security, privacy, onboarding, support and documentation.'
    )
  )
  t.equal(many.topics.length, 10, 'capped at 10')

  const idiom = await analyse(user('Hi Sarah. In order to use the Zapier integration I need the API docs for Stripe.'))
  t.notOk(idiom.topics.includes('order'), '"in order to" is not about an order')
  t.notOk(idiom.topics.includes('sarah'), 'the name after a greeting is not a topic')
  t.same(
    idiom.topics.slice(0, 3),
    ['integration', 'api', 'documentation'],
    'lexicon hits by count (Zapier is an integration too), ties alphabetical'
  )
  t.ok(idiom.topics.includes('stripe'), 'a proper noun elsewhere is a topic')
})

t.test('summary is extracted from user sentences and is at most 280 characters', async (t) => {
  const long =
    'I have been a customer for many years, however recently the invoices I receive each month contain charges for ' +
    'services that I never ordered and never used, and when I call the support line nobody is able to explain where ' +
    'these charges come from or how to remove them from my account, which is very frustrating.'
  const insight = await analyse(
    user('Hello.'),
    assistant('Welcome to Acme support, the assistant sentence that must never appear in the summary.'),
    user(long),
    user('My order number is 1234.')
  )
  t.ok(insight.summary.length <= 280, `summary is ${insight.summary.length} characters`)
  t.ok(insight.summary.endsWith('…'), 'a cut summary ends with an ellipsis')
  t.ok(long.startsWith(insight.summary.slice(0, -1).trimEnd()), 'the summary is the top user sentence, cut at a word boundary')
  t.notMatch(insight.summary, /assistant sentence/)

  const short = await analyse(user('Hi there.'), user('The app crashes when I upload a photo. It started after the update.'))
  t.equal(short.summary, 'The app crashes when I upload a photo. It started after the update.', 'two best sentences in order, greeting dropped')
})

t.test('summary is never empty', async (t) => {
  t.equal((await analyse(user('   '), assistant(''))).summary, '(no text)', 'nothing to say at all')
  t.equal((await analyse(assistant('Hello, how can I help?'))).summary, 'Hello, how can I help?', 'no user text: the assistant speaks')
  t.equal((await analyse(user('😡😡😡'))).summary, '😡😡😡')
})

t.test('language: French and Spanish are told apart from English', async (t) => {
  t.equal((await analyse(user('Bonjour, ma facture est fausse. Je veux un remboursement rapidement, merci.'))).language, 'fr')
  t.equal((await analyse(user('Hola, mi factura está mal y quiero un reembolso de mi dinero, por favor.'))).language, 'es')
  t.equal((await analyse(user('Hello, my invoice is wrong and I would like a refund please.'))).language, 'en')
  t.equal((await analyse(user('ok'))).language, 'und', 'too short to tell')
  const french = await analyse(user('Bonjour, ma facture est fausse. Je veux un remboursement rapidement, merci.'))
  t.ok(french.topics.includes('invoice') && french.topics.includes('refund'), 'the lexicon knows a few French money words')
})

t.test('deterministic: the same input twice gives identical output', async (t) => {
  const items = [
    conversation(user('My invoice is wrong!'), assistant('Sorry, checking.'), user('Please hurry, this is urgent.')),
    conversation(user('I love the product but the delivery was terrible.')),
    conversation(user('¿Dónde está mi pedido?')),
    conversation(user('Le site est en panne depuis ce matin.'))
  ]
  const first = await createLocalAnalyzer().analyzeBatch(items)
  const second = await createLocalAnalyzer().analyzeBatch(structuredClone(items))
  t.same(second, first)
  t.equal(JSON.stringify(second), JSON.stringify(first), 'byte-identical once serialised')
})

t.test('odd text never throws and always yields valid fields', async (t) => {
  const odd: [string, Message[]][] = [
    ['no messages', []],
    ['empty strings', [user(''), assistant('')]],
    ['whitespace only', [user(' \n\t ')]],
    ['emoji only', [user('😀🎉👍🏽👨‍👩‍👧‍👦🏳️‍🌈')]],
    ['Arabic', [user('مرحبا، فاتورتي خاطئة! أريد استرداد المال فوراً')]],
    ['Hebrew', [user('שלום, החשבונית שלי שגויה ואני רוצה החזר')]],
    ['mixed directions', [user('My invoice \u202Eis wrong\u202C: فاتورة #42 שגויה!')]],
    ['lone surrogates', [user('broken \uD800 text \uDC00 here \uDBFF'), assistant('\uDFFF')]],
    ['combining marks', [user('e\u0301\u0301\u0301\u0301 Z\u0336a\u0336l\u0336g\u0336o\u0336')]],
    ['zero-width and BOM', [user('\uFEFF\u200B\u200D\u2060')]],
    ['control characters', [user('bell\u0007 escape\u001B[31m red \u007F')]],
    ['punctuation only', [user('?!?!... ---- !!!')]],
    ['digits only', [user('1234 5678 90')]],
    ['one long word', [user('x'.repeat(50_000))]],
    ['very long text', [user('My invoice is wrong and the app crashes. '.repeat(2_000)), assistant('ok '.repeat(20_000))]],
    ['many messages', Array.from({ length: 500 }, (_, i) => (i % 2 ? assistant('Sure.') : user('Still broken!')))],
    ['only system and tool', [{ role: 'system', content: 'be nice' }, { role: 'tool', content: '{"ok":true}' }]],
    ['not a string', [{ role: 'user', content: undefined as unknown as string }]],
    ['unknown role', [{ role: 'robot' as Message['role'], content: 'beep' }, user('hi')]]
  ]
  const analyzer = createLocalAnalyzer()
  const started = performance.now()
  const { results } = await analyzer.analyzeBatch(odd.map(([id, messages]) => ({ id, source: 'test', messages })))
  t.ok(performance.now() - started < 5_000, 'bounded time even for huge input')
  t.equal(results.length, odd.length)
  for (const r of results) {
    t.same(r.ok ? contractViolations(r.insight) : r, [], r.id)
  }
})

t.test('an aborted signal stops the batch before any work', async (t) => {
  const controller = new AbortController()
  controller.abort(new Error('shutting down'))
  await t.rejects(createLocalAnalyzer().analyzeBatch([conversation(user('hi'))], controller.signal), { message: 'shutting down' })
})
