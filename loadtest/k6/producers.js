// k6 load test: producers pushing conversations into Gleaner (docs/api.md, "Producers").
//
//   k6 run loadtest/k6/producers.js
//   GLEANER_URL=http://127.0.0.1:3000 GLEANER_API_KEY=gln_... PEAK_RATE=20 k6 run loadtest/k6/producers.js
//
// Scenarios:
//   single  ramping-arrival-rate of POST /api/v1/conversations (202 new, 200 duplicate)
//   batch   ramping-arrival-rate of POST /api/v1/conversations/batch with BATCH_ITEMS (100) items (207)
// Every conversation gets a unique external_id (run id + scenario + iteration), except a
// DUPLICATE_RATIO share that re-sends an earlier one on purpose, as a retrying producer
// would: the same body, byte for byte (same source, external_id and messages), which must
// answer 200 with "duplicate": true and the first send's id. A share of conversations is
// small talk ("hi", "thanks") that the prefilter should answer with status "skipped".
//
// The key needs scope `ingest` and a tier whose rate limit and daily quota cover the run
// (or run Gleaner with AUTH=off and RATE_LIMIT_ANONYMOUS raised): a 429 counts as a failure.
// The defaults stay under the enterprise tier's default ingest limit (3,000 requests a
// minute, 50/s); a higher PEAK_RATE needs RATE_LIMIT_ENTERPRISE raised on the server.
//
// Environment: GLEANER_URL, GLEANER_API_KEY, START_RATE (5/s), PEAK_RATE (40/s),
// RAMP (1m), HOLD (3m), RAMP_DOWN (30s), BATCH_RATE (peak batches per minute, 30),
// BATCH_ITEMS (100), DUPLICATE_RATIO (0.02), P95_SINGLE_MS (300), P95_BATCH_MS (2000), RUN_ID.
import { check } from 'k6'
import exec from 'k6/execution'
import http from 'k6/http'
import { Counter } from 'k6/metrics'

export const BASE_URL = (__ENV.GLEANER_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '')
const API_KEY = __ENV.GLEANER_API_KEY || ''

const START_RATE = Number(__ENV.START_RATE || 5)
const PEAK_RATE = Number(__ENV.PEAK_RATE || 40)
const RAMP = __ENV.RAMP || '1m'
const HOLD = __ENV.HOLD || '3m'
const RAMP_DOWN = __ENV.RAMP_DOWN || '30s'
const BATCH_RATE = Number(__ENV.BATCH_RATE || 30)
const BATCH_ITEMS = Number(__ENV.BATCH_ITEMS || 100)
const DUPLICATE_RATIO = Number(__ENV.DUPLICATE_RATIO || 0.02)

const accepted = new Counter('gleaner_accepted')
const skipped = new Counter('gleaner_skipped')
const duplicates = new Counter('gleaner_duplicates')

export const options = {
  scenarios: {
    single: {
      executor: 'ramping-arrival-rate',
      exec: 'ingestOne',
      startRate: START_RATE,
      timeUnit: '1s',
      preAllocatedVUs: Math.max(10, Math.ceil(PEAK_RATE / 4)),
      maxVUs: Math.max(50, PEAK_RATE * 2),
      stages: [
        { target: PEAK_RATE, duration: RAMP },
        { target: PEAK_RATE, duration: HOLD },
        { target: 0, duration: RAMP_DOWN }
      ]
    },
    batch: {
      executor: 'ramping-arrival-rate',
      exec: 'ingestBatch',
      startRate: 1,
      timeUnit: '1m',
      preAllocatedVUs: 5,
      maxVUs: Math.max(20, BATCH_RATE),
      stages: [
        { target: BATCH_RATE, duration: RAMP },
        { target: BATCH_RATE, duration: HOLD },
        { target: 0, duration: RAMP_DOWN }
      ]
    }
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{scenario:single}': [`p(95)<${Number(__ENV.P95_SINGLE_MS || 300)}`],
    'http_req_duration{scenario:batch}': [`p(95)<${Number(__ENV.P95_BATCH_MS || 2000)}`]
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max']
}

/** Parsed JSON body, or null (a 5xx from a proxy may not be JSON; a check should fail, not throw). */
export function json(res) {
  try {
    return res.json()
  } catch {
    return null
  }
}

export function headers() {
  const h = { 'Content-Type': 'application/json', Accept: 'application/json' }
  if (API_KEY) h.Authorization = `Bearer ${API_KEY}`
  return h
}

// --- realistic, varied conversations --------------------------------------------------

export const SOURCES = ['web-chat', 'email', 'zendesk', 'intercom', 'mobile-app', 'voice.transcript']
const PLANS = ['free', 'pro', 'enterprise']
const LOCALES = ['en-US', 'en-GB', 'de-DE', 'fr-FR', 'es-ES']

// Each theme: what a customer opens with, follow-ups, and how an agent answers.
const THEMES = [
  {
    openers: [
      'My invoice for this month is wrong, I was charged twice for the same seat.',
      'Why did my card get billed {n} dollars when my plan costs less than that?',
      'I need a copy of the invoice from last March for our accounting team.'
    ],
    followUps: [
      'The charge shows up on {date} and again two days later.',
      'This is the second time this happens, honestly it is getting frustrating.',
      'Can you refund the duplicate charge to the original card?'
    ],
    replies: [
      'Sorry about that, let me look at your billing history.',
      'I can see the duplicate charge, I have issued a refund that should arrive in 5 to 10 business days.',
      'I have emailed you the invoice as a PDF.'
    ]
  },
  {
    openers: [
      'I cannot log in, the password reset email never arrives.',
      'Two factor authentication keeps rejecting my code even though the time on my phone is right.',
      'My account got locked after I typed the password wrong a few times.'
    ],
    followUps: [
      'I already checked the spam folder, nothing there.',
      'I need access urgently, we have a customer demo in an hour!',
      'I tried from another browser and from my phone, same problem.'
    ],
    replies: [
      'I have unlocked the account, please try again now.',
      'Could you confirm the email address on the account?',
      'I resent the reset link from our side; it expires in 30 minutes.'
    ]
  },
  {
    openers: [
      'My order #{n} still has not shipped and it was supposed to arrive yesterday.',
      'The package arrived damaged, the box was completely crushed.',
      'Tracking says delivered but there is nothing at my door.'
    ],
    followUps: [
      'I paid for express shipping so I expected it much sooner.',
      'Can you send a replacement instead of a refund?',
      'The courier did not leave any note either.'
    ],
    replies: [
      'I am sorry for the delay, the warehouse shipped it this morning.',
      'I have opened a claim with the carrier and a replacement is on its way.',
      'Please allow 24 hours; sometimes tracking updates before the actual delivery.'
    ]
  },
  {
    openers: [
      'The export to CSV crashes the app every time I select more than a thousand rows.',
      'Since the last update the dashboard takes forever to load, like 30 seconds.',
      'I get an error 500 when I upload a file bigger than 10 MB.'
    ],
    followUps: [
      'It happens on Chrome and Firefox, on Windows and on Mac.',
      'Here is the error message: "unexpected end of input at line {n}".',
      'This blocks our whole team, we cannot do our monthly report.'
    ],
    replies: [
      'Thanks for the details, I reproduced it and filed a bug with our engineers.',
      'A fix is scheduled for the next release; meanwhile exporting in smaller chunks works.',
      'Could you send the file that fails so we can test with it?'
    ]
  },
  {
    openers: [
      'It would be great if we could schedule reports to be emailed every Monday.',
      'Do you plan to support single sign-on with Okta?',
      'Is there a way to add custom fields to the contact form?'
    ],
    followUps: [
      'Our competitors tool already has this, and it is the main thing we miss.',
      'We would happily pay for the enterprise plan if it had that.',
      'Any rough timeline would help us plan.'
    ],
    replies: [
      'Thanks, I added your vote to the feature request.',
      'SSO with Okta is available on the enterprise plan already; I can enable a trial.',
      'Custom fields are on our roadmap for next quarter.'
    ]
  },
  {
    openers: [
      'I want to cancel my subscription, it is too expensive for what we use.',
      'Please close my account and delete my data.',
      'How do I downgrade from pro to the free plan?'
    ],
    followUps: [
      'We are moving to another provider at the end of the month.',
      'Will I still have access until the end of the billing period?',
      'Make sure I am not charged again please.'
    ],
    replies: [
      'I am sorry to see you go. I have scheduled the cancellation for the end of the period.',
      'Before you leave, I can offer 30% off for the next three months.',
      'Done, your plan will switch to free on the next renewal date.'
    ]
  },
  {
    openers: [
      'Just wanted to say the new editor is fantastic, it saves me an hour a day.',
      'Your support team solved my problem in five minutes yesterday, thank you so much!',
      'Great product, the onboarding was really smooth for our team.'
    ],
    followUps: [
      'Keep up the good work, really.',
      'I already recommended you to two other companies.',
      'One small thing: dark mode would make it perfect.'
    ],
    replies: [
      'Thank you, that means a lot to the team!',
      'I will pass your kind words along.',
      'Dark mode is coming in the next release.'
    ]
  },
  {
    openers: [
      'Hola, no puedo acceder a mi cuenta desde ayer y necesito descargar mis facturas.',
      'Bonjour, ma commande est arrivée incomplète, il manque deux articles.',
      'Hallo, die Rechnung ist falsch, mir wurde zweimal derselbe Betrag abgebucht.'
    ],
    followUps: ['Es bastante urgente, gracias.', 'Merci de me répondre rapidement.', 'Bitte um schnelle Erstattung.'],
    replies: ['Lo revisamos enseguida.', 'Nous vérifions votre commande.', 'Wir prüfen das sofort.']
  }
]

// Small talk the prefilter should skip (user text too short or boilerplate only).
const SMALL_TALK = [
  [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'Hello! How can I help you today?' }],
  [{ role: 'user', content: 'thanks' }],
  [{ role: 'user', content: 'ok bye' }, { role: 'assistant', content: 'Have a nice day!' }],
  [{ role: 'user', content: 'test' }]
]

const pick = (arr) => arr[Math.floor(Math.random() * arr.length)]
const fill = (s) =>
  s.replace('{n}', String(100 + Math.floor(Math.random() * 9900))).replace('{date}', new Date(Date.now() - 864e5 * 3).toISOString().slice(0, 10))

/** One conversation as the contract describes it; `externalId` makes it idempotent. */
export function makeConversation(externalId) {
  const source = pick(SOURCES)
  let messages
  if (Math.random() < 0.08) {
    messages = pick(SMALL_TALK).map((m) => ({ ...m }))
  } else {
    const theme = pick(THEMES)
    messages = []
    if (Math.random() < 0.3) messages.push({ role: 'system', content: 'You are a helpful support agent for Acme.' })
    messages.push({ role: 'user', content: fill(pick(theme.openers)) })
    const turns = 1 + Math.floor(Math.random() * 5)
    for (let i = 0; i < turns; i++) {
      messages.push({ role: Math.random() < 0.7 ? 'assistant' : 'agent', content: fill(pick(theme.replies)) })
      if (Math.random() < 0.75) messages.push({ role: 'user', content: fill(pick(theme.followUps)) })
    }
  }
  // Timestamps a few seconds apart, ending a little before now; some producers omit them.
  if (Math.random() < 0.7) {
    let t = Date.now() - messages.length * 20_000 - Math.floor(Math.random() * 3_600_000)
    for (const m of messages) {
      t += 5_000 + Math.floor(Math.random() * 30_000)
      m.at = new Date(t).toISOString()
    }
  }
  const conversation = { source, messages }
  if (externalId) conversation.external_id = externalId
  if (Math.random() < 0.8) {
    conversation.metadata = { plan: pick(PLANS), locale: pick(LOCALES), customer: { tier: pick(PLANS), seats: 1 + Math.floor(Math.random() * 200) } }
  }
  return conversation
}

// --- scenarios --------------------------------------------------------------------------

export function setup() {
  const runId = __ENV.RUN_ID || `k6-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`
  if (!API_KEY) console.warn('GLEANER_API_KEY is not set: requests carry no key (works only with AUTH=off)')
  return { runId }
}

/** Bodies this VU sent and their ids, for deliberate re-sends; bounded, oldest replaced. */
const sentByThisVu = []
const SENT_KEPT = 200

/** POST /api/v1/conversations: 202 for a new conversation, 200 for a re-sent one. */
export function ingestOne(data) {
  const resend = sentByThisVu.length > 0 && Math.random() < DUPLICATE_RATIO
  // a re-send is the same request again, as a producer retrying after a lost answer sends it
  const earlier = resend ? pick(sentByThisVu) : null
  const payload = earlier ? earlier.payload : JSON.stringify(makeConversation(`${data.runId}-${exec.scenario.name}-${exec.scenario.iterationInTest}`))
  const res = http.post(`${BASE_URL}/api/v1/conversations`, payload, {
    headers: headers(),
    tags: { name: 'POST /api/v1/conversations' }
  })
  const body = json(res) || {}
  if (earlier) {
    duplicates.add(1)
    check(res, {
      'resend: 200': (r) => r.status === 200,
      'resend: duplicate true, the first send\'s id': () => body.duplicate === true && body.id === earlier.id
    })
    return
  }
  check(res, {
    'ingest: 202': (r) => r.status === 202,
    'ingest: id, status pending|skipped, duplicate false': () =>
      typeof body.id === 'string' && (body.status === 'pending' || body.status === 'skipped') && body.duplicate === false
  })
  if (res.status === 202) {
    if (body.status === 'skipped') skipped.add(1)
    else accepted.add(1)
    const sent = { payload, id: body.id }
    if (sentByThisVu.length < SENT_KEPT) sentByThisVu.push(sent)
    else sentByThisVu[Math.floor(Math.random() * SENT_KEPT)] = sent
  }
}

/** POST /api/v1/conversations/batch with BATCH_ITEMS valid conversations: 207, all accepted. */
export function ingestBatch(data) {
  const prefix = `${data.runId}-${exec.scenario.name}-${exec.scenario.iterationInTest}`
  const conversations = []
  for (let i = 0; i < BATCH_ITEMS; i++) conversations.push(makeConversation(`${prefix}-${i}`))
  const res = http.post(`${BASE_URL}/api/v1/conversations/batch`, JSON.stringify({ conversations }), {
    headers: headers(),
    tags: { name: 'POST /api/v1/conversations/batch' },
    timeout: '60s'
  })
  const body = json(res) || {}
  const results = Array.isArray(body.results) ? body.results : []
  check(res, {
    'batch: 207': (r) => r.status === 207,
    'batch: one result per item, in order': () => results.length === BATCH_ITEMS && results.every((x, i) => x.index === i),
    'batch: counts add up, none rejected': () =>
      body.accepted + body.duplicates + body.rejected === BATCH_ITEMS && body.rejected === 0 && body.duplicates === 0,
    'batch: every item has an id and no error': () => results.every((x) => typeof x.id === 'string' && !x.error)
  })
  if (res.status === 207) {
    for (const r of results) {
      if (r.status === 'skipped') skipped.add(1)
      else if (r.id) accepted.add(1)
    }
  }
}

export default function (data) {
  ingestOne(data)
}
