// The console's entry: the key, the taxonomy, and a hash router over the four pages. The
// state of a page (filters, cursor, conversation id) lives in the hash, so back, forward and
// reload work and a link can be shared; the key never does.
import { ApiError, explain, forgetKey, getJson, storedKey, storeKey, whenUnauthorized } from './api.js'
import { alertBox, mount } from './dom.js'
import { renderConversation } from './views/conversation.js'
import { renderInsights } from './views/insights.js'
import { renderLive } from './views/live.js'
import { renderOverview } from './views/overview.js'

const $ = (id) => document.getElementById(id)
const main = $('main')
const nav = $('nav')
const signin = $('signin')
const signinError = $('signin-error')
const signout = $('signout')

const ROUTES = {
  overview: renderOverview,
  insights: renderInsights,
  conversation: renderConversation,
  live: renderLive
}

let taxonomy = null
let current = null // { controller, cleanup } of the page on screen

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '')
  const q = raw.indexOf('?')
  const path = (q < 0 ? raw : raw.slice(0, q)).split('/').filter(Boolean)
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1))
  const name = ROUTES[path[0]] ? path[0] : 'overview'
  return { name, arg: path[1] ? decodeURIComponent(path[1]) : undefined, params }
}

async function route() {
  if (!taxonomy) return
  current?.controller.abort()
  current?.cleanup?.()
  const { name, arg, params } = parseHash()
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.tab === (name === 'conversation' ? 'insights' : name))
  const controller = new AbortController()
  current = { controller }
  document.body.dataset.page = name
  try {
    const cleanup = await ROUTES[name]({ main, taxonomy, params, arg, signal: controller.signal })
    if (controller.signal.aborted) cleanup?.()
    else current.cleanup = cleanup
  } catch (err) {
    if (controller.signal.aborted || err.name === 'AbortError') return
    if (err instanceof ApiError && err.status === 401) return // handled by showSignin
    mount(main, alertBox(explain(err)))
  }
}

function showSignin(message) {
  current?.controller.abort()
  current?.cleanup?.()
  current = null
  taxonomy = null
  main.replaceChildren()
  nav.hidden = true
  signout.hidden = true
  signin.hidden = false
  signinError.hidden = !message
  signinError.textContent = message ?? ''
  $('key').focus()
}

function showConsole(tax, withKey) {
  taxonomy = tax
  signin.hidden = true
  nav.hidden = false
  signout.hidden = !withKey
  route()
}

/** Checks a key by reading the taxonomy with it (read scope): the first thing every page needs. */
async function tryKey(key) {
  try {
    return { taxonomy: await getJson('/api/v1/taxonomy', {}, { key }) }
  } catch (err) {
    return { error: err }
  }
}

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  const input = $('key')
  const key = input.value.trim()
  if (!key) return
  const button = e.target.querySelector('button')
  button.disabled = true
  const result = await tryKey(key)
  button.disabled = false
  if (result.error) {
    signinError.hidden = false
    signinError.textContent = explain(result.error)
    return
  }
  input.value = ''
  storeKey(key)
  showConsole(result.taxonomy, true)
})

signout.addEventListener('click', () => {
  forgetKey()
  showSignin()
})

whenUnauthorized(() => {
  if (!taxonomy) return
  forgetKey()
  showSignin('Your API key is no longer accepted (it may have been revoked). Paste a valid key to continue.')
})

window.addEventListener('hashchange', route)

// Start: with the stored key, or with none (a server running with AUTH=off needs none).
const key = storedKey()
const first = await tryKey(key)
if (first.taxonomy) showConsole(first.taxonomy, Boolean(key))
else if (first.error instanceof ApiError && first.error.status === 401 && !key) showSignin()
else {
  if (first.error instanceof ApiError && (first.error.status === 401 || first.error.status === 403)) forgetKey()
  showSignin(explain(first.error))
}
