import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import type { Message } from '../../src/domain.ts'
import { type PrefilterOptions, prefilter, prefilterOptionsFrom } from '../../src/pipeline/prefilter.ts'

const defaults = prefilterOptionsFrom(loadConfig({}))
const user = (content: string): Message => ({ role: 'user', content })
const assistant = (content: string): Message => ({ role: 'assistant', content })
const options = (over: Partial<PrefilterOptions> = {}): PrefilterOptions => ({ ...defaults, ...over })

t.test('a conversation with enough of the customer’s own words is kept', async (t) => {
  t.same(prefilter([user('My invoice is wrong, I was charged twice this month.')], defaults), { skip: false })
})

t.test('no user message at all is skipped as no_user_message', async (t) => {
  t.same(prefilter([assistant('Hello, how can I help you today?')], defaults), { skip: true, reason: 'no_user_message' })
  t.same(prefilter([], defaults), { skip: true, reason: 'no_user_message' }, 'an empty transcript too')
})

t.test('user text that is only greetings or thanks is skipped as boilerplate_only', async (t) => {
  t.same(prefilter([user('Hi!'), assistant('Hello, what can I do for you?'), user('Thank you.')], defaults), {
    skip: true,
    reason: 'boilerplate_only'
  })
  t.same(prefilter([user('  HELLO  ')], defaults), { skip: true, reason: 'boilerplate_only' }, 'case and spacing do not matter')
})

t.test('boilerplate next to a real message does not skip the conversation', async (t) => {
  t.same(prefilter([user('hi'), user('the export to CSV fails with an error every time')], defaults), { skip: false })
})

t.test('user text that is only links is skipped as links_only', async (t) => {
  t.same(prefilter([user('https://example.com/a/b/c')], defaults), { skip: true, reason: 'links_only' })
  t.same(prefilter([user('www.example.com/page  http://x.io')], defaults), { skip: true, reason: 'links_only' })
})

t.test('user text that is only punctuation is skipped as too_short, not links_only', async (t) => {
  t.same(prefilter([user('?!... :)')], defaults), { skip: true, reason: 'too_short' })
})

t.test('too few words or characters is skipped as too_short', async (t) => {
  t.same(prefilter([user('it broke')], defaults), { skip: true, reason: 'too_short' }, 'two words < 3')
  t.same(prefilter([user('a b c d')], defaults), { skip: true, reason: 'too_short' }, 'four words but 7 chars < 12')
})

t.test('links and emails are removed before words and characters are counted', async (t) => {
  t.same(
    prefilter([user('see https://example.com/a/very/long/path/that/adds/many/characters bad')], defaults),
    { skip: true, reason: 'too_short' },
    'a long link does not make two words long enough'
  )
  t.same(prefilter([user('mail someone.with.a.long.name@example.com now')], defaults), { skip: true, reason: 'too_short' })
  t.same(prefilter([user('write to support@example.com please, my order never arrived')], defaults), { skip: false })
})

t.test('only user messages are judged: assistant, system, agent and tool text does not count', async (t) => {
  const messages: Message[] = [
    { role: 'system', content: 'You are a helpful support agent for a large company.' },
    { role: 'assistant', content: 'I can see your order was shipped yesterday from our warehouse.' },
    { role: 'agent', content: 'Escalating this ticket to the billing team right now.' },
    { role: 'tool', content: '{"order": 123, "status": "shipped", "carrier": "ups"}' },
    user('ok')
  ]
  t.same(prefilter(messages, defaults), { skip: true, reason: 'boilerplate_only' })
  t.same(prefilter(messages.slice(0, 4), defaults), { skip: true, reason: 'no_user_message' })
})

t.test('a disabled prefilter keeps everything', async (t) => {
  const off = options({ enabled: false })
  t.same(prefilter([], off), { skip: false })
  t.same(prefilter([user('hi')], off), { skip: false })
  t.same(prefilter([user('https://example.com')], off), { skip: false })
})

t.test('thresholds come from configuration', async (t) => {
  const cfg = prefilterOptionsFrom(loadConfig({ PREFILTER_MIN_USER_CHARS: '0', PREFILTER_MIN_USER_WORDS: '1' }))
  t.same(prefilter([user('broken')], cfg), { skip: false }, 'one word passes with MIN_USER_WORDS=1')
  const strict = prefilterOptionsFrom(loadConfig({ PREFILTER_MIN_USER_WORDS: '10' }))
  t.same(prefilter([user('My invoice is wrong, I was charged twice.')], strict), { skip: true, reason: 'too_short' })
  const long = prefilterOptionsFrom(loadConfig({ PREFILTER_MIN_USER_CHARS: '100' }))
  t.same(prefilter([user('My invoice is wrong, I was charged twice.')], long), { skip: true, reason: 'too_short' })
})

t.test('the boilerplate list comes from configuration, trimmed and case-insensitive', async (t) => {
  const cfg = prefilterOptionsFrom(loadConfig({ PREFILTER_BOILERPLATE: ' Good Morning , cheers,,' }))
  t.same([...cfg.boilerplate].sort(), ['cheers', 'good morning'])
  t.same(prefilter([user('good morning!')], cfg), { skip: true, reason: 'boilerplate_only' })
  t.same(prefilter([user('hi')], cfg), { skip: true, reason: 'too_short' }, '"hi" is no longer boilerplate, just short')
  const none = prefilterOptionsFrom(loadConfig({ PREFILTER_BOILERPLATE: '' }))
  t.equal(none.boilerplate.size, 0)
})

t.test('emoji are not words: emoji-only text is too short, emoji around words do not count', async (t) => {
  t.same(prefilter([user('😡😡😡 👎👎 🔥🔥🔥🔥')], defaults), { skip: true, reason: 'too_short' })
  t.same(prefilter([user('😡 the app crashes on login 😡')], defaults), { skip: false })
})

t.test('right-to-left and non-Latin text is judged by its words', async (t) => {
  t.same(prefilter([user('الفاتورة خاطئة وتم خصم المبلغ مرتين')], defaults), { skip: false }, 'Arabic sentence')
  t.same(prefilter([user('החשבונית שלי שגויה לגמרי')], defaults), { skip: false }, 'Hebrew sentence')
  t.same(prefilter([user('שלום')], defaults), { skip: true, reason: 'too_short' }, 'one Hebrew word')
  t.same(prefilter([user('Мой счёт выставлен дважды')], defaults), { skip: false }, 'Cyrillic sentence')
})

t.test(
  'emoji written with variation selectors or zero-width joiners are not words either',
  async (t) => {
    t.same(prefilter([user('❤️ ❤️ ❤️ ❤️ ❤️ ❤️ ❤️')], defaults), { skip: true, reason: 'too_short' }, 'red hearts (U+2764 U+FE0F)')
    t.same(prefilter([user('👨‍👩‍👧 👨‍👩‍👧 👨‍👩‍👧 👨‍👩‍👧')], defaults), { skip: true, reason: 'too_short' }, 'family ZWJ sequences')
  }
)

t.test('words are counted across the customer’s messages, wherever the threshold is reached', async (t) => {
  const opts = options({ minUserWords: 4, minUserChars: 0 })
  t.same(prefilter([user('refund please'), assistant('Sure, which order?'), user('order late')], opts), { skip: false }, 'two and two make four')
  t.same(prefilter([user('refund please'), user('late')], opts), { skip: true, reason: 'too_short' }, 'three are too few')
  t.same(prefilter([user('https://example.com/x'), user('?!')], options({ minUserWords: 0, minUserChars: 0 })), { skip: true, reason: 'links_only' }, 'no word in any message')
  t.same(prefilter([user('?!'), user('refund')], options({ minUserWords: 0, minUserChars: 0 })), { skip: false }, 'a word in a later message counts even when no threshold is set')
  t.same(prefilter([user('ab cd'), user('ef')], options({ minUserWords: 0, minUserChars: 8 })), { skip: false }, 'characters joined by spaces: "ab cd ef" is 8')
  t.same(prefilter([user('ab cd'), user('e')], options({ minUserWords: 0, minUserChars: 8 })), { skip: true, reason: 'too_short' }, '"ab cd e" is 7')
})
