// Building the page from data: elements are made with createElement and text is set as
// text, never parsed as HTML, so customer text (summaries, messages, topics) cannot inject
// markup. Styles come from console.css classes; widths set here go through CSSOM, which the
// CSP allows, not through style attributes, which it does not.

/** h('a', { href, class }, 'text', child…): an element with properties, listeners and children. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') el.className = v
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue
    if (Array.isArray(c)) append(el, c)
    else el.append(c instanceof Node ? c : String(c))
  }
}

/** A <select> of options [value, label, title?], led by an "any" option unless anyLabel is null. */
export function select(name, label, options, value, anyLabel = 'any') {
  return h(
    'select',
    { name, 'aria-label': label },
    anyLabel === null ? null : h('option', { value: '' }, anyLabel),
    options.map(([v, text, title]) => h('option', { value: v, title, selected: v === value }, text))
  )
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' })
export const fmtTime = (iso) => (iso ? dateTime.format(new Date(iso)) : '—')
export const fmtClock = (iso) => timeOnly.format(new Date(iso))
export const fmtInt = (n) => Number(n).toLocaleString()
export const fmtScore = (n) => {
  const s = n.toFixed(2)
  return s === '-0.00' ? '0.00' : n > 0 && s !== '0.00' ? `+${s}` : s
}
export const fmtUsd = (n) => `$${Number(n).toFixed(n && n < 0.01 ? 6 : 4)}`
export const label = (name) => name.replaceAll('_', ' ')

export const sentimentBadge = (s) => h('span', { class: `badge sentiment-${s}` }, s)
export const urgencyBadge = (u) => h('span', { class: `badge urgency-${u}` }, u)
export const topicChips = (topics, linkTo) =>
  h(
    'span',
    { class: 'chips' },
    topics.map((t) => (linkTo ? h('a', { class: 'chip', href: linkTo(t) }, t) : h('span', { class: 'chip' }, t)))
  )

/** A horizontal bar whose width is a share of the largest value. */
export function bar(value, max, cls) {
  const fill = h('span', { class: `bar-fill ${cls}` })
  fill.style.width = `${max > 0 ? Math.max(2, (value / max) * 100) : 0}%`
  return h('span', { class: 'bar' }, fill)
}

export function alertBox(message) {
  return h('p', { class: 'alert', role: 'alert' }, message)
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren()
  append(el, children)
}
