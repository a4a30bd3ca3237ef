// One conversation: what the customer and the agents said, by role, and the insight made
// from it with the model, prompt version, tokens and cost.
import { getJson } from '../api.js'
import { fmtScore, fmtTime, fmtUsd, h, label, mount, sentimentBadge, topicChips, urgencyBadge } from '../dom.js'
import { lastListHash } from './insights.js'

export async function renderConversation({ main, taxonomy, arg, signal }) {
  const c = await getJson(`/api/v1/conversations/${encodeURIComponent(arg ?? '')}`, {}, { signal })
  const i = c.insight
  const intentDefinition = i ? taxonomy.intents.find((x) => x.name === i.intent)?.definition : undefined

  // back to the list as it was (filters, page) when the analyst left it
  const back = h('a', { class: 'back', href: lastListHash }, '← Insights')

  mount(
    main,
    back,
    h('h1', { class: 'page-title' }, 'Conversation ', h('code', { class: 'id' }, c.id)),
    h(
      'dl',
      { class: 'facts' },
      fact('source', c.source),
      fact('external id', c.external_id ?? '—'),
      fact('status', h('span', { class: `status status-${c.status}` }, c.status)),
      fact('received', fmtTime(c.received_at)),
      fact('analysed', fmtTime(c.analyzed_at)),
      fact('attempts', String(c.attempts)),
      c.skip_reason ? fact('skipped because', c.skip_reason) : null
    ),
    h(
      'div',
      { class: 'conversation-grid' },
      h(
        'section',
        { class: 'card insight', id: 'insight' },
        h('h2', null, 'Insight'),
        i
          ? [
              h('p', { class: 'insight-summary' }, i.summary),
              h(
                'dl',
                { class: 'facts' },
                fact('sentiment', [sentimentBadge(i.sentiment), ' ', h('span', { class: 'num' }, fmtScore(i.sentiment_score))]),
                fact('urgency', urgencyBadge(i.urgency)),
                fact('intent', h('span', { title: intentDefinition }, label(i.intent))),
                fact('topics', topicChips(i.topics, (t) => `#/insights?topic=${encodeURIComponent(t)}`)),
                fact('language', i.language),
                fact('model', h('code', null, i.model)),
                fact('prompt version', h('code', null, i.prompt_version)),
                fact('from cache', i.cached ? 'yes' : 'no'),
                fact('tokens', `${i.tokens.input.toLocaleString()} in · ${i.tokens.output.toLocaleString()} out`),
                fact('cost', fmtUsd(i.cost_usd)),
                fact('made', fmtTime(i.created_at))
              )
            ]
          : h('p', { class: 'muted' }, c.status === 'skipped' ? 'Skipped by the prefilter: no insight.' : `No insight yet (${c.status}).`)
      ),
      h(
        'section',
        { class: 'card messages', id: 'messages' },
        h('h2', null, `Messages (${c.messages.length})`),
        h(
          'ol',
          { class: 'thread' },
          c.messages.map((m) =>
            h(
              'li',
              { class: `msg role-${m.role}` },
              h('span', { class: 'role' }, m.role, m.at ? h('time', { datetime: m.at }, ` · ${fmtTime(m.at)}`) : null),
              h('p', null, m.content)
            )
          )
        ),
        c.metadata ? h('details', null, h('summary', null, 'metadata'), h('pre', null, JSON.stringify(c.metadata, null, 2))) : null
      )
    )
  )
  return undefined
}

function fact(term, value) {
  return [h('dt', null, term), h('dd', null, value)]
}
