// Live: new insights as they are stored, from /api/v1/insights/stream. EventSource cannot
// send an Authorization header, so the stream is read with fetch and parsed with
// eventsource-parser; the key stays out of the URL. Reconnects after a drop.
import { explain, getRaw, withQuery } from '../api.js'
import { fmtClock, h, label, mount, select, sentimentBadge, topicChips, urgencyBadge } from '../dom.js'
import { EventSourceParserStream } from '../vendor/eventsource-parser/stream.js'
import { conversationHref } from './insights.js'

/** Rows kept on screen: enough to watch a busy hour's trend, bounded for a tab left open. */
const LIVE_MAX_ROWS = 200
/** Wait before reconnecting, doubling to the cap while the server stays away. */
const RETRY_MS = 3_000
const RETRY_MAX_MS = 30_000
const FILTERS = ['sentiment', 'urgency', 'source']

export async function renderLive({ main, taxonomy, params, signal }) {
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) ?? '']))
  const form = h(
    'form',
    { class: 'toolbar' },
    h('label', null, 'Sentiment ', select('sentiment', 'sentiment', taxonomy.sentiments.map((x) => [x.name, label(x.name)]), filters.sentiment)),
    h('label', null, 'Urgency ', select('urgency', 'urgency', taxonomy.urgencies.map((x) => [x.name, label(x.name)]), filters.urgency)),
    h('label', null, 'Source ', h('input', { name: 'source', value: filters.source, maxlength: 64, placeholder: 'any', size: 12 })),
    h('button', { type: 'submit', class: 'quiet' }, 'Apply')
  )
  const apply = (e) => {
    e.preventDefault()
    const data = new FormData(form)
    location.hash = withQuery('#/live', Object.fromEntries(FILTERS.map((k) => [k, String(data.get(k) ?? '').trim()])))
  }
  form.addEventListener('submit', apply)
  form.addEventListener('change', (e) => e.target.tagName === 'SELECT' && apply(e))

  const state = h('span', { class: 'live-state', id: 'live-state', dataset: { state: 'connecting' } }, 'connecting…')
  const counter = h('span', { class: 'muted', id: 'live-count' }, '0 received')
  const list = h('ol', { class: 'live-list', id: 'live-list' })
  const empty = h('p', { class: 'muted', id: 'live-empty' }, 'Waiting for new insights. They appear here as soon as they are stored.')
  mount(main, h('h1', { class: 'page-title' }, 'Live'), form, h('p', { class: 'live-head' }, state, counter), empty, list)

  let received = 0
  const setState = (name, text) => {
    state.dataset.state = name
    state.textContent = text
  }
  const add = (i) => {
    received++
    counter.textContent = `${received.toLocaleString()} received`
    empty.hidden = true
    list.prepend(
      h(
        'li',
        { class: 'live-item fresh', dataset: { id: i.conversation_id } },
        h('time', { datetime: i.created_at }, fmtClock(i.created_at)),
        sentimentBadge(i.sentiment),
        urgencyBadge(i.urgency),
        h('span', { class: 'intent' }, label(i.intent)),
        h('a', { class: 'summary', href: conversationHref(i.conversation_id) }, i.summary),
        topicChips(i.topics),
        h('span', { class: 'source muted' }, i.source)
      )
    )
    while (list.childElementCount > LIVE_MAX_ROWS) list.lastElementChild.remove()
  }

  const run = async () => {
    let wait = RETRY_MS
    while (!signal.aborted) {
      try {
        setState('connecting', 'connecting…')
        const res = await getRaw('/api/v1/insights/stream', filters, { accept: 'text/event-stream', signal })
        setState('live', 'live')
        wait = RETRY_MS
        const reader = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader()
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          if (value.event === 'insight') add(JSON.parse(value.data))
        }
        setState('retrying', 'connection closed; reconnecting…')
      } catch (err) {
        if (signal.aborted) return
        if (err.status === 401 || err.status === 403) {
          setState('failed', explain(err))
          return
        }
        setState('retrying', `${explain(err)} Reconnecting…`)
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, wait)
        signal.addEventListener('abort', () => {
          clearTimeout(timer)
          resolve()
        })
      })
      wait = Math.min(wait * 2, RETRY_MAX_MS)
    }
  }
  run()
  return undefined
}
