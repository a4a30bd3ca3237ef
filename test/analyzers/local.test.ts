import t from 'tap'
import type { AnalysisInput } from '../../src/analyzers/analyzer.ts'
import { createLocalAnalyzer, LOCAL_MODEL, LOCAL_PROMPT_VERSION } from '../../src/analyzers/local.ts'
import { COMMON_TOPICS, INTENTS, type InsightFields, type Message, SENTIMENT_SCORE_BANDS, SENTIMENTS, URGENCIES } from '../../src/domain.ts'

const user = (content: string): Message => ({ role: 'user', content })
const assistant = (content: string): Message => ({ role: 'assistant', content })
const agent = (content: string): Message => ({ role: 'agent', content })

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

/** The fields of an insight a case names, to compare with what the case wants. */
const fieldsOf = (insight: InsightFields, want: Partial<InsightFields>) =>
  Object.fromEntries(Object.keys(want).map((k) => [k, insight[k as keyof InsightFields]]))

/** Every way an insight can break the contract, as readable strings: an empty list means valid. */
function contractViolations(insight: InsightFields): string[] {
  const problems: string[] = []
  if (!SENTIMENTS.includes(insight.sentiment)) problems.push(`sentiment ${insight.sentiment} not in the enum`)
  const score = insight.sentiment_score
  if (!Number.isFinite(score) || score < -1 || score > 1) problems.push(`score ${score} outside [-1, 1]`)
  const [min, max] = SENTIMENT_SCORE_BANDS[insight.sentiment] ?? [-1, 1]
  if (score < min || score > max) problems.push(`score ${score} outside the ${insight.sentiment} band`)
  if (insight.topics.length > 10) problems.push(`${insight.topics.length} topics`)
  if (!insight.topics.every((topic) => (COMMON_TOPICS as readonly string[]).includes(topic))) problems.push('a topic outside the lexicon')
  if (new Set(insight.topics).size !== insight.topics.length) problems.push('duplicate topics')
  if (!(INTENTS as readonly string[]).includes(insight.intent)) problems.push(`intent ${insight.intent} not in the set`)
  if (!URGENCIES.includes(insight.urgency)) problems.push(`urgency ${insight.urgency} not in the enum`)
  if (insight.summary.length === 0 || insight.summary.length > 280) problems.push(`summary of ${insight.summary.length} characters`)
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(insight.summary)) problems.push('lone surrogate in summary')
  if (!/^([a-z]{2}|und)$/.test(insight.language)) problems.push(`language ${insight.language}`)
  return problems
}

t.test('identifies itself as local-linear-v3, rules v3.1, free, one result per item in order', async (t) => {
  const analyzer = createLocalAnalyzer()
  t.teardown(() => analyzer.close())
  t.equal(analyzer.model, 'local-linear-v3')
  t.equal(LOCAL_MODEL, 'local-linear-v3')
  t.equal(analyzer.promptVersion, 'v3.1')
  t.equal(LOCAL_PROMPT_VERSION, 'v3.1')
  t.equal(analyzer.billable, false)
  await t.resolves(analyzer.ping(), 'ping resolves: the models load')

  const items = [conversation(user('My invoice is wrong.')), conversation(user('Thanks, all good!'))]
  const batch = await analyzer.analyzeBatch(items)
  t.same(batch.usage, { input: 0, output: 0, cost_usd: 0, calls: 0 })
  t.same(
    batch.results.map((r) => r.id),
    items.map((i) => i.id)
  )
  for (const r of batch.results) {
    t.equal(r.ok, true)
    if (r.ok) t.same([r.tokens, r.cost_usd], [{ input: 0, output: 0 }, 0])
  }
})

t.test('a complaint about a double charge is negative, billing, a complaint and high urgency (money lost)', async (t) => {
  const insight = await analyse(
    user('My invoice is wrong. You charged me twice this month and nobody answers my emails. This is unacceptable!'),
    assistant('I am sorry to hear that, let me check your account.')
  )
  t.equal(insight.sentiment, 'negative')
  t.ok(insight.sentiment_score < -0.05, `score ${insight.sentiment_score} is negative`)
  t.same(insight.topics.slice(0, 2), ['billing', 'invoice'])
  t.equal(insight.intent, 'complaint')
  t.equal(insight.urgency, 'high')
  t.equal(insight.language, 'en')
})

t.test('praise is positive with intent praise and low urgency', async (t) => {
  const insight = await analyse(user('Thank you so much, the new dashboard is amazing and your team was super helpful!'), assistant('Glad to hear it!'))
  t.equal(insight.sentiment, 'positive')
  t.ok(insight.sentiment_score > 0.05)
  t.equal(insight.intent, 'praise')
  t.equal(insight.urgency, 'low')
})

t.test('a plain request reads neutral: "help" and "want" are not praise', async (t) => {
  for (const text of ['How do I export my data to a spreadsheet?', 'I want to change the delivery address of my order, can you help?']) {
    const insight = await analyse(user(text))
    t.equal(insight.sentiment, 'neutral', text)
    t.not(insight.intent, 'praise', text)
  }
  const rude = await analyse(user('I cannot reset my damn user account pwd'))
  t.equal(rude.sentiment, 'negative', 'a rude request is negative')
  t.equal(rude.intent, 'account_help')
})

t.test('multi-turn: the customer decides; agent politeness and a cheerful bot change nothing', async (t) => {
  const cheerfulBot = await analyse(user('How do I export my data to CSV?'), assistant('Great question! I love helping with this, it is wonderful and easy!'))
  t.equal(cheerfulBot.sentiment, 'neutral')
  const apologeticBot = await analyse(user('I love this product, it is fantastic!'), assistant('Sorry, that is terrible news, awful.'))
  t.equal(apologeticBot.sentiment, 'positive', "the customer's opinion wins")
})

t.test('multi-turn: a closing "thanks" does not flip a complaint', async (t) => {
  const sameTurn = await analyse(user('I was charged twice for the same month. This is terrible. Thanks.'))
  t.equal(sameTurn.sentiment, 'negative', 'a courtesy sentence in the same message')
  const closing = await analyse(
    user('My package was supposed to arrive 3 days ago and it still is not here. Tracking has not updated since Monday.'),
    assistant('So sorry! Could you DM us your order number?'),
    user('Sent. Thanks'),
    user('Thank you!')
  )
  t.equal(closing.sentiment, 'negative', 'closing courtesy turns')
  t.not(closing.intent, 'praise')
})

t.test('multi-turn: the last customer turn counts, resolved (mixed) versus escalated (negative)', async (t) => {
  const problem = user('My phone battery will not charge past 50% since the last update, really annoying.')
  const resolved = await analyse(problem, assistant('Please restart it while plugged in.'), user('That worked, thanks so much!'))
  t.equal(resolved.sentiment, 'mixed', 'a real problem that ends resolved')
  t.match(resolved.summary, /Resolved\.$/)
  const escalated = await analyse(problem, assistant('Please restart it while plugged in.'), user('Tried it, still not working. This is useless.'))
  t.equal(escalated.sentiment, 'negative')
  t.match(escalated.summary, /Still unresolved\.$/)
})

t.test('multi-turn: sarcasm markers count as negative', async (t) => {
  t.equal((await analyse(user('Great update🙄 now the app crashes every time I open it'))).sentiment, 'negative', 'eye-roll emoji')
  t.equal((await analyse(user('Great job guys, my flight got cancelled again and my luggage is lost'))).sentiment, 'negative', '"great job" after a failure')
  t.equal((await analyse(user('Great job on the new release, the team did excellent work!'))).sentiment, 'positive', '"great job" alone is praise')
})

t.test('praise for one thing and a complaint about another is mixed', async (t) => {
  const insight = await analyse(
    user('I love the new dashboard, it is fantastic.'),
    assistant('Thanks for the feedback!'),
    user('But the billing page is terrible and the export is broken.')
  )
  t.equal(insight.sentiment, 'mixed')
  t.equal(insight.urgency, 'medium')
  t.equal(insight.summary, 'The billing page is terrible and the export is broken.', 'the summary leads with the problem, without the "But" that tied it to the praise')
})

t.test('multi-turn: a polite chaser after a complaint is manners, not relief: still negative', async (t) => {
  const sorry = assistant('Sorry to hear that, let me check this for you.')
  for (const chaser of ['Please get back to me today.', 'Thanks, please hurry.', 'Any update? Please let me know.']) {
    const insight = await analyse(user('This is the worst service I have ever used. I am furious, nobody answers and I am still waiting.'), sorry, user(chaser))
    t.equal(insight.sentiment, 'negative', chaser)
    t.equal(insight.summary, 'This is the worst service I have ever used. I am furious, nobody answers and I am still waiting.', `${chaser}: the summary is the complaint`)
  }
  const crash = await analyse(user('The export to CSV fails with an error 500.'), sorry, user('Thanks, please hurry.'))
  t.equal(crash.sentiment, 'negative', 'a failure chased politely')
})

t.test('a polite request or support question without praise reads neutral', async (t) => {
  for (const text of [
    'Could you add dark mode to the app? It would help a lot at night.',
    'Is there a discount if we upgrade to the enterprise plan for 50 seats?',
    'Please send me a quote for 20 licences.'
  ]) {
    t.equal((await analyse(user(text))).sentiment, 'neutral', text)
  }
  t.equal((await analyse(user('Love the new app, it is so much faster! Could you add dark mode too?'))).sentiment, 'positive', 'a request with praise stays positive')
})

t.test('outages and late deliveries stated calmly are grievances: negative', async (t) => {
  for (const text of [
    'URGENT: the whole service is down since this morning and our team cannot work!',
    'Our shop is offline since 9am and customers cannot pay at checkout.',
    'My order has not shipped yet and it was supposed to arrive last week.'
  ]) {
    t.equal((await analyse(user(text))).sentiment, 'negative', text)
  }
})

t.test('support grievances the review models misread: never read as praise or calm', async (t) => {
  const cases: [text: string, want: Partial<InsightFields>][] = [
    ['hey i was charged for a subscription i never signed up for', { sentiment: 'negative', urgency: 'high' }],
    ['your agent hung up on me twice today', { sentiment: 'negative', intent: 'complaint' }],
    ['my internet has been dropping every 10 minutes since tuesday', { sentiment: 'negative', intent: 'bug_report' }],
    ['the new update drains my battery so fast', { sentiment: 'negative', intent: 'bug_report' }],
    ["I'd like to upgrade my plan to the family bundle", { sentiment: 'neutral', intent: 'purchase' }]
  ]
  for (const [text, want] of cases) {
    const insight = await analyse(user(text))
    t.same(fieldsOf(insight, want), want, text)
  }
})

t.test('Twitter-style support threads: acknowledgements and a ritual "ok thanks" close nothing', async (t) => {
  const threads: [name: string, messages: Message[], want: Partial<InsightFields>][] = [
    [
      'a fee after cancelled rides, then "done"',
      [user('@Rides driver cancelled on me 3 times in a row and i still got charged a cancellation fee??'), assistant('@user Please DM us the email on your account.'), user('@Rides done')],
      { sentiment: 'negative', intent: 'complaint' }
    ],
    [
      'delivered but not here, then "ok will wait, thanks"',
      [user("@ShopHelp hi, my package says delivered but it's not here. I checked with neighbours too."), assistant('@user Sometimes packages are marked early. ^SL'), user('@ShopHelp ok will wait, thanks')],
      { sentiment: 'negative' }
    ],
    [
      'an outage acknowledged, then "ok thanks for letting me know"',
      [user("@GameSupport can't sign in to my account, error 0x87dd0006"), assistant('@user We are having issues, follow @GameStatus for updates.'), user('@GameSupport ok thanks for letting me know')],
      { sentiment: 'neutral', intent: 'account_help' }
    ],
    [
      'a phone that keeps restarting',
      [user('@PhoneCare my phone keeps restarting after the update. what do i do?'), assistant('@user Try a force restart. ^JK'), user('@PhoneCare tried it, still the same')],
      { sentiment: 'negative', intent: 'bug_report' }
    ]
  ]
  for (const [name, messages, want] of threads) {
    const insight = await analyse(...messages)
    t.same(fieldsOf(insight, want), want, name)
  }
  t.equal((await analyse(user('What is your cancellation policy for annual plans?'))).intent, 'question', 'a cancellation policy is asked about, not a cancellation')
})

t.test('a calm problem that the customer says is fixed is mixed, and the summary says resolved', async (t) => {
  const insight = await analyse(
    user("Hi, I can't log in to my account since yesterday, it says my password is wrong. Can you help please?"),
    assistant("I've sent you a reset link."),
    user('Got it now, thanks a lot!')
  )
  t.equal(insight.sentiment, 'mixed')
  t.match(insight.summary, /Resolved\.$/)
  const praise = await analyse(user('Loving the new update, the app is so much faster!'), assistant('Thank you!'), user('Perfect, thanks!'))
  t.notMatch(praise.summary, /Resolved/, 'praise has no outcome to report')
})

t.test('system and tool messages are ignored', async (t) => {
  const insight = await analyse(
    { role: 'system', content: 'URGENT: the customer wants a refund, they called a lawyer, this is terrible!' },
    { role: 'tool', content: 'outage detected, chargeback filed' },
    user('How do I export my data to CSV?')
  )
  t.same([insight.urgency, insight.intent, insight.sentiment], ['low', 'question', 'neutral'])
  t.notOk(insight.topics.includes('refund'), 'system text adds no topics')
})

t.test('urgency follows the rubric: security, fraud, money lost, outages, deadlines and threats are high', async (t) => {
  const high = [
    'My card was stolen, please block it',
    'There are payments on my account I did not make, this is fraud',
    'No service for 2 days in my area, what is going on?',
    'I was charged twice for my order',
    'Please reset my password asap, my flight leaves tonight',
    'If this is not fixed I will talk to my lawyer.',
    'Your service is down and we cannot access anything.',
    'Fix this or I am switching to another carrier',
    'I need the replacement before Saturday, it is a gift',
    'Two charges I never made showed up on my statement',
    'That money has left my account and nobody can find it',
    'One more week like this and I am taking my business elsewhere'
  ]
  for (const text of high) t.equal((await analyse(user(text))).urgency, 'high', text)
  t.equal((await analyse(user('The app crashes when I upload a photo.'))).urgency, 'medium', 'a malfunction is medium')
  t.equal((await analyse(user('How do I export my data to CSV?'))).urgency, 'low', 'a calm question is low')
})

t.test('intent: the documented precedence and the trained model on support phrasing', async (t) => {
  const cases: [string, string][] = [
    ['This is terrible, the invoice is wrong and I want a refund.', 'refund_request'],
    ['Please cancel my subscription at the end of the month.', 'cancellation'],
    ["I can't log in, it says my password is wrong and shows an error.", 'account_help'],
    ['The app crashes every time I open the settings page.', 'bug_report'],
    ['It would be great if you could add a dark mode.', 'feature_request'],
    ['I am looking to buy the premium plan, how much is it?', 'purchase'],
    ['Where can I find the API documentation?', 'question'],
    ['My order number is 1234.', 'other'],
    ['my transfer to my landlord failed twice today', 'bug_report'],
    ['I forgot my passcode and now the app is locked', 'account_help'],
    ['what are the fees for sending money abroad?', 'question'],
    ['I would like to order a new physical card', 'purchase'],
    ['Your delivery driver was rude and left my parcel in the rain', 'complaint']
  ]
  for (const [text, intent] of cases) t.equal((await analyse(user(text))).intent, intent, text)
})

t.test('intent: a plain request nothing more specific claims is a question, not "other"', async (t) => {
  for (const text of ['i need help to see the bill from last march', 'I would like to know the status of my application']) {
    t.equal((await analyse(user(text))).intent, 'question', text)
  }
  t.equal((await analyse(user('My order number is 1234.'))).intent, 'other', 'a statement that asks nothing stays other')
})

t.test('sentiment: a statement the model barely leans on is neutral (the neutral band)', async (t) => {
  for (const text of ['I moved house last month.', 'The parcel is with the neighbours.']) {
    t.equal((await analyse(user(text))).sentiment, 'neutral', text)
  }
})

t.test('topics: lexicon subjects only, wrong hits fixed, support domains covered', async (t) => {
  const topicsOf = async (text: string) => (await analyse(user(text))).topics
  t.same(await topicsOf('My phone battery is not charging, it charged fine yesterday'), ['battery', 'device'], 'battery "charged" is not billing')
  t.ok((await topicsOf('You charged my card twice for one order')).includes('billing'), '"you charged me" is billing')
  const carrier = await topicsOf('My carrier has no signal in my area since Monday')
  t.ok(carrier.includes('mobile network') && !carrier.includes('shipping'), 'a carrier with no signal is telecom, not shipping')
  const covered: [string, string][] = [
    ['The wifi keeps disconnecting every hour', 'connectivity'],
    ['Is there an outage? Nothing loads', 'outage'],
    ['Netflix keeps buffering on every episode', 'streaming'],
    ['The airline lost my luggage on the flight to Rome', 'luggage'],
    ['I booked a hotel and the reservation disappeared', 'travel'],
    ['The game disconnects in multiplayer on my Xbox', 'games'],
    ['My parcel was delivered to the wrong address', 'delivery'],
    ['Someone hacked my account, please secure it', 'security'],
    ['I cannot sign in to my account', 'login']
  ]
  for (const [text, topic] of covered) t.ok((await topicsOf(text)).includes(topic), `${topic}: ${text}`)
  t.same(await topicsOf('In order to use it I need to return to the start'), [], 'idioms: "in order to", "return to"')
  t.same(await topicsOf('Is there a discount if we upgrade to the enterprise plan for 50 seats?'), ['pricing'], 'licence seats are not a flight')
  t.ok((await topicsOf('Can I get a window seat on my flight to Rome?')).includes('flight'), 'a window seat is')
  t.same(await topicsOf('The export fails with an error 500. (ticket 1093)'), ['bug'], 'a ticket number names no subject')
  t.ok((await topicsOf('The agent on the phone was rude to me')).includes('support'), 'how an agent treated the customer is support')
})

t.test('topics never carry names, handles, emails, numbers or filler words', async (t) => {
  const insight = await analyse(
    user(
      "Hi Sarah, I'm John Smith (@johnny_s, john.smith@example.com, +1 555 123 4567). Order 123456789 &amp; my invoice are wrong. " +
        'Lol amp i\'m ok yeah. Call Mike at the Boston office, my account is 4111 1111 1111 1111.'
    )
  )
  t.ok(insight.topics.length > 0)
  for (const topic of insight.topics) {
    t.ok((COMMON_TOPICS as readonly string[]).includes(topic), `${topic} is a lexicon subject`)
    t.notMatch(topic, /sarah|john|smith|mike|boston|johnny|@|\d|amp|i'm|lol/, `${topic} carries no personal data or junk`)
  }
})

t.test('summary: the first substantive problem, greeting and names dropped, personal data masked', async (t) => {
  const insight = await analyse(
    user('Hello.'),
    assistant('Welcome to Acme support, the assistant sentence that must never appear in the summary.'),
    user(
      'Hi Sarah, @AcmeHelp my card 4111 1111 1111 1111 was charged twice &amp; nobody replies to john.doe@example.com or +44 7700 900123. ' +
        'See https://example.com/ticket/42 for account 12345678.'
    ),
    user('It works now, thanks!')
  )
  t.equal(insight.summary, 'My card [card] was charged twice & nobody replies to [email] or [phone]. See for account [number]. Resolved.')
  t.notMatch(insight.summary, /Sarah|@|http|4111|john|7700|12345678|assistant sentence/)

  const named = await analyse(user('Hello, my name is Jane Doe and my internet has been down since Monday.'))
  t.notMatch(named.summary, /Jane|Doe/, 'a self-introduction is masked')
  t.match(named.summary, /^My name is \[name\]/)
})

t.test('summary: opening pleasantries and self-introductions are not the lead', async (t) => {
  const email = await analyse(
    user("Hi team,\n\nI hope you're well. Invoice INV-2231 charges us for 40 seats but we only have 25.\n\nCould you correct it?\n\nBest,\nJohn")
  )
  t.equal(email.summary, 'Invoice INV-2231 charges us for 40 seats but we only have 25. Could you correct it?')
  const morning = await analyse(user('Good morning. My name is Maria Lopez. My card was declined at checkout three times today.'))
  t.equal(morning.summary, 'My card was declined at checkout three times today.')
  const hope = await analyse(user('I hope this gets fixed soon, the app logs me out every hour and I lose my work.'))
  t.match(hope.summary, /^I hope this gets fixed soon, the app logs me out/, 'a long sentence that starts with hope is content')
})

t.test('a greeting alone carries no feeling; thanks alone is gratitude', async (t) => {
  for (const text of ['hey', 'ok', 'hello?']) {
    const insight = await analyse(user(text))
    t.same([insight.sentiment, insight.intent === 'praise'], ['neutral', false], text)
  }
  t.equal((await analyse(user('Thanks!'))).sentiment, 'positive')
})

t.test('summary: at most 280 characters, cut at a word, never empty', async (t) => {
  const long =
    'I have been a customer for many years however recently the invoices I receive each month contain charges for ' +
    'services that I never ordered and never used and when I call the support line nobody is able to explain where ' +
    'these charges come from or how to remove them from my account which is very frustrating and I want answers'
  const insight = await analyse(user(long))
  t.ok(insight.summary.length <= 280, `summary is ${insight.summary.length} characters`)
  t.ok(insight.summary.endsWith('…'))
  t.ok(long.startsWith(insight.summary.slice(0, -1).trimEnd()))
  t.equal((await analyse(user('   '), assistant(''))).summary, '(no text)')
  t.equal((await analyse(assistant('Hello, how can I help?'))).summary, 'How can I help?', 'no customer text: the agent speaks')
  t.equal((await analyse(user('😡😡😡'))).summary, '😡😡😡')
})

t.test('language: French and Spanish are told apart from English; short English phrases stay English', async (t) => {
  t.equal((await analyse(user('Bonjour, ma facture est fausse. Je veux un remboursement rapidement, merci.'))).language, 'fr')
  t.equal((await analyse(user('Hola, mi factura está mal y quiero un reembolso de mi dinero, por favor.'))).language, 'es')
  t.equal((await analyse(user('a warm, funny, engaging film'))).language, 'en')
  t.equal((await analyse(user('ok'))).language, 'und', 'too short to tell')
  const french = await analyse(user('Bonjour, ma facture est fausse. Je veux un remboursement rapidement, merci.'))
  t.same([french.sentiment, french.intent], ['neutral', 'refund_request'], 'English models stay silent; the multilingual refund rule still applies')
})

t.test('deterministic: the same input twice gives byte-identical output', async (t) => {
  const items = [
    conversation(user('My invoice is wrong!'), assistant('Sorry, checking.'), user('Please hurry, this is urgent.')),
    conversation(user('I love the product but the delivery was terrible.')),
    conversation(user('¿Dónde está mi pedido?')),
    conversation(user('Le site est en panne depuis ce matin.'))
  ]
  const first = await createLocalAnalyzer().analyzeBatch(items)
  const second = await createLocalAnalyzer().analyzeBatch(structuredClone(items))
  t.equal(JSON.stringify(second), JSON.stringify(first))
})

// A super-linear pattern on these inputs runs for minutes (the FACTS note: 2,500 "@" take
// 10 s); tap's per-test timeout turns that into a failure without a timing assertion.
t.test('hostile text at the contract limits never throws and always yields valid fields', { timeout: 60_000 }, async (t) => {
  const big = 32_000
  const odd: [string, Message[]][] = [
    ['no messages', []],
    ['empty strings', [user(''), agent('')]],
    ['emoji only', [user('😀🎉👍🏽👨‍👩‍👧‍👦🏳️‍🌈')]],
    ['Arabic', [user('مرحبا، فاتورتي خاطئة! أريد استرداد المال فوراً')]],
    ['mixed directions', [user('My invoice \u202Eis wrong\u202C: فاتورة #42 שגויה!')]],
    ['lone surrogates', [user('broken \uD800 text \uDC00 here \uDBFF'), assistant('\uDFFF')]],
    ['control characters', [user('bell\u0007 escape\u001B[31m red \u007F')]],
    ['one long word', [user('x'.repeat(big))]],
    ['at signs', [user('@'.repeat(big))]],
    ['emails without domains', [user('a@'.repeat(big / 2))]],
    ['digits and spaces', [user('1 '.repeat(big / 2))]],
    ['dots', [user('a.'.repeat(big / 2))]],
    ['entities', [user('&amp;'.repeat(big / 5))]],
    ['greetings', [user('hi '.repeat(big / 3))]],
    ['exclamations', [user('!'.repeat(big))]],
    ['sentence ends', [user('. '.repeat(big / 2))]],
    ['dots then a letter', [user(`${'.'.repeat(big - 1)}x`)]],
    ['spaces then a letter', [user(`${' '.repeat(big - 1)}x`)]],
    ['apostrophes', [user("a'".repeat(big / 2))]],
    ['urls', [user('http://'.repeat(big / 7))]],
    ['many messages', Array.from({ length: 500 }, (_, i) => (i % 2 ? assistant('Sure.') : user(`Still broken! ${'x'.repeat(big - 20)}`)))],
    ['not a string', [{ role: 'user', content: undefined as unknown as string }]],
    ['unknown role', [{ role: 'robot' as Message['role'], content: 'beep' }, user('hi')]]
  ]
  const { results } = await createLocalAnalyzer().analyzeBatch(odd.map(([id, messages]) => ({ id, source: 'test', messages })))
  t.equal(results.length, odd.length)
  for (const r of results) t.same(r.ok ? contractViolations(r.insight) : r, [], r.id)
})

t.test('an aborted signal stops the batch before any work', async (t) => {
  const controller = new AbortController()
  controller.abort(new Error('shutting down'))
  await t.rejects(createLocalAnalyzer().analyzeBatch([conversation(user('hi'))], controller.signal), { message: 'shutting down' })
})
