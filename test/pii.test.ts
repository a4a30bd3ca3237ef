import t from 'tap'
import { findPii, maskPii, PII_KINDS, type PiiKind } from '../src/pii.ts'

/** The spans of a text as [kind, matched text] pairs: readable in a failure diff. */
const found = (text: string, kinds?: readonly PiiKind[]) => findPii(text, kinds).map((s) => [s.kind, text.slice(s.start, s.end)])

t.test('finds emails, phone numbers, cards, IBANs, IP addresses, handles, links and long numbers with their spans', async (t) => {
  t.same(found('Mail john.doe+tag@example.co.uk today'), [['email', 'john.doe+tag@example.co.uk']])
  t.same(found('call +1 (555) 123-4567 or 07700 900123 or 555-123-4567'), [
    ['phone', '+1 (555) 123-4567'],
    ['phone', '07700 900123'],
    ['phone', '555-123-4567']
  ])
  t.same(found('card 4111 1111 1111 1111, 4111-1111-1111-1111 and 4111111111111111'), [
    ['card', '4111 1111 1111 1111'],
    ['card', '4111-1111-1111-1111'],
    ['card', '4111111111111111']
  ])
  t.same(found('IBAN GB82 WEST 1234 5698 7654 32 or DE89370400440532013000.'), [
    ['iban', 'GB82 WEST 1234 5698 7654 32'],
    ['iban', 'DE89370400440532013000']
  ])
  t.same(found('from 192.168.1.20 and 2001:db8::8a2e:370:7334 and fe80::1'), [
    ['ip', '192.168.1.20'],
    ['ip', '2001:db8::8a2e:370:7334'],
    ['ip', 'fe80::1']
  ])
  t.same(found('thanks @Acme_Help! see https://t.co/abc?x=1. or www.example.com/path, ok'), [
    ['handle', '@Acme_Help'],
    ['url', 'https://t.co/abc?x=1'],
    ['url', 'www.example.com/path']
  ])
  t.same(found('account 12345678, order #98765'), [
    ['number', '12345678'],
    ['number', '98765']
  ])
  const text = 'x john@example.com y'
  const [span] = findPii(text)
  t.same(span, { kind: 'email', start: 2, end: 18 }, 'UTF-16 offsets, end exclusive')
})

t.test('checksums and shapes keep ordinary text out: Luhn, IBAN mod-97, IPv4 ranges, dates, years, amounts', async (t) => {
  t.same(found('4111 1111 1111 1112'), [['number', '4111 1111 1111 1112']], 'a 16-digit number failing Luhn is not a card (still masked as a number)')
  t.notOk(
    findPii('GB82 WEST 1234 5698 7654 33').some((s) => s.kind === 'iban'),
    'an IBAN with a wrong check digit is not an IBAN (its digits are still masked)'
  )
  t.notOk(
    findPii('version 999.168.1.20').some((s) => s.kind === 'ip'),
    'an octet above 255 is not an IPv4 address'
  )
  t.same(found('on 2024-01-05, 05/01/2024 or 5.1.24, in 2019, for $300 or 3.14, at 10:30:45'), [], 'dates, years, small amounts and times stay')
  t.same(found('me@localhost, a@b.c, x@y'), [], 'no domain with a TLD: not an email')
  t.same(found('an email@ sign, foo@bar'), [], 'an "@" glued to a word is not a handle')
})

t.test('kinds can be chosen: only what the caller asks for is reported', async (t) => {
  const text = '@bob mailed bob@example.com from 10.0.0.1'
  t.same(found(text, ['email']), [['email', 'bob@example.com']])
  t.same(found(text, ['handle', 'ip']), [
    ['handle', '@bob'],
    ['ip', '10.0.0.1']
  ])
  t.same([...PII_KINDS].sort(), ['card', 'email', 'handle', 'iban', 'ip', 'number', 'phone', 'url'])
})

t.test('maskPii: bracketed kinds by default, typed placeholders numbered per kind, the same value the same number', async (t) => {
  const text = 'Write to a@example.com or b@example.com, then a@example.com again; call +44 7700 900123'
  t.equal(maskPii(text), 'Write to [email] or [email], then [email] again; call [phone]')
  t.equal(
    maskPii(text, { replace: (span, n) => `<${span.kind.toUpperCase()}_${n}>` }),
    'Write to <EMAIL_1> or <EMAIL_2>, then <EMAIL_1> again; call <PHONE_1>'
  )
  const originals: string[] = []
  maskPii(text, {
    replace: (_s, _n, original) => {
      originals.push(original)
      return ''
    }
  })
  t.same(originals, ['a@example.com', 'b@example.com', 'a@example.com', '+44 7700 900123'], 'the replacer sees each original, to keep a reverse map')
  t.equal(maskPii('nothing personal here'), 'nothing personal here')
})

// Every scanner step consumes what it read or looks at a bounded window, so these run in
// milliseconds; a super-linear scan would run for minutes and hit tap's per-test timeout.
t.test('linear on hostile text at the contract limit (32,000 characters)', { timeout: 30_000 }, async (t) => {
  const n = 32_000
  const hostile: [string, string][] = [
    ['at signs', '@'.repeat(n)],
    ['local parts without domains', 'a@'.repeat(n / 2)],
    ['a long local part then dots', `${'a'.repeat(n / 2)}@${'b.'.repeat(n / 4)}`],
    ['digits and spaces', '1 '.repeat(n / 2)],
    ['digits and dots', '1.'.repeat(n / 2)],
    ['digits and dashes', '1-'.repeat(n / 2)],
    ['plus signs', '+1'.repeat(n / 2)],
    ['parentheses', '(1'.repeat(n / 2)],
    ['IBAN heads', 'GB82'.repeat(n / 4)],
    ['hex and colons', 'ab:'.repeat(n / 3)],
    ['link heads', 'http://'.repeat(n / 7)],
    ['words', 'word '.repeat(n / 5)],
    ['one digit run', '7'.repeat(n)]
  ]
  for (const [name, text] of hostile) {
    const spans = findPii(text)
    t.ok(
      spans.every((s, i) => s.start < s.end && (i === 0 || spans[i - 1]!.end <= s.start)),
      `${name}: ${spans.length} spans, ordered and not overlapping`
    )
    t.type(maskPii(text), 'string')
  }
})
