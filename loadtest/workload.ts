// Conversations for load runs: varied enough that the analysis cache does not hide the
// analyzer's cost (every text differs), realistic in size (4 messages, ~400 bytes).
const OPENERS = [
  'My invoice for order {n} is wrong, I was charged twice this month.',
  'The app crashes every time I open the settings page, build {n}.',
  'I love the new dashboard, it saves me hours every week, thanks team {n}!',
  'How do I reset my password? I cannot log in to account {n}.',
  'Shipping for order {n} is late by a week and nobody answers my emails.',
  'Can you add an export to CSV? We need it for report {n}.',
  'I want to cancel my subscription {n}, it is too expensive for us.',
  'The API returns 500 errors on the orders endpoint since release {n}.'
]
const FOLLOW_UPS = [
  'This is really frustrating, please fix it as soon as possible.',
  'It worked fine last week, nothing changed on our side.',
  'Our whole team depends on this every day.',
  'Thanks for the quick help so far.',
  'Please call me back, it is urgent.'
]

export function conversationFor(i: number, opts: { externalId?: boolean } = {}) {
  const opener = OPENERS[i % OPENERS.length]!.replace('{n}', String(i))
  const follow = FOLLOW_UPS[(i * 7) % FOLLOW_UPS.length]!
  return {
    source: ['web-chat', 'email', 'helpdesk'][i % 3]!,
    ...(opts.externalId ? { external_id: `bench-${i}` } : {}),
    messages: [
      { role: 'user', content: opener },
      { role: 'assistant', content: 'Thanks for reaching out, let me look into that for you.' },
      { role: 'user', content: `${follow} Reference ${i}.` },
      { role: 'assistant', content: 'I have escalated this to the right team.' }
    ],
    metadata: { plan: i % 2 ? 'pro' : 'free' }
  }
}
