// Text → hashed features for the local linear models. Training (eval/train.ts) and the
// analyzer call the same function, so a model always sees features made the way it was
// trained on; any change here needs `npm run train` and a new model version.
//
// Features are lower-cased word unigrams, adjacent word pairs and character 4-grams inside
// words longer than three letters (stems, typos, elongations), hashed into 2^bits
// buckets (the "hashing trick": no vocabulary to ship, unknown words cost nothing).
// Words after a negation ("not", "never", "can't") up to the next punctuation are marked,
// so "not good" and "good" are different features. Links, @handles and numbers become
// placeholder tokens: they carry no sentiment and must not become memorised identifiers.

/**
 * Words, emoji, "!" and "?" as features; [.,;:] only end a negation scope. Every
 * alternative starts with a different class of character and none nests a quantifier, so
 * the scan is linear in the text whatever it holds.
 */
const TOKEN_RE =
  /https?:\/\/\S+|www\.\S+|@[\p{L}\p{N}_]+|[\p{L}\p{M}\p{N}]+(?:['\u2019][\p{L}\p{M}]+)*|\p{Extended_Pictographic}|[!?]|[.,;:]/gu
const DIGIT_RE = /^\p{N}+$/u
const NEGATORS = new Set([
  'not',
  'no',
  'never',
  'cannot',
  'nothing',
  'nobody',
  'none',
  'nor',
  'neither',
  'without',
  'hardly',
  'cant',
  'dont',
  'wont',
  'didnt',
  'doesnt',
  'isnt',
  'wasnt',
  'arent',
  'havent',
  'hasnt',
  'couldnt',
  'wouldnt',
  'shouldnt'
])
/** A negation marks this many following words at most: its reach in ordinary sentences. */
const NEGATION_SCOPE_WORDS = 3

/** 32-bit FNV-1a: fast, stable across platforms and versions, good enough spread for hashing features. */
export function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Length of the character n-grams inside words: 4 reads stems and typos ("disapointed") best here. */
const CHAR_GRAM = 4
const CHAR_GRAM_SEED = 0x9747b28c

/**
 * FNV-1a of token[start, start + CHAR_GRAM) with a space before and after the word, so
 * prefixes and suffixes are features of their own; no substring is allocated.
 */
function charGramHash(token: string, start: number): number {
  let h = CHAR_GRAM_SEED
  for (let i = start; i < start + CHAR_GRAM; i++) {
    h ^= i < 0 || i >= token.length ? 0x20 : token.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Joins two token hashes into a pair hash that differs from both and from the reversed pair. */
function pairHash(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h ^ b, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** "soooo" and "sooo" read alike: runs of three or more of one letter become two. */
function squeezeRuns(word: string): string {
  if (word.length < 4) return word
  let out = ''
  let run = 0
  for (let i = 0; i < word.length; i++) {
    const ch = word[i]!
    run = i > 0 && word[i - 1] === ch ? run + 1 : 1
    if (run <= 2) out += ch
  }
  return out
}

/** The tokens features are made of, in order; exported for tests and for the rules that read them. */
export function featureTokens(text: string): string[] {
  const tokens: string[] = []
  let negated = 0
  // treebank-style text splits "doesn't" into "does n't"; joined again, the negation is seen
  const lower = text.toLowerCase()
  const joined = lower.includes(" n't") ? lower.replaceAll(" n't", "n't") : lower
  for (const match of joined.matchAll(TOKEN_RE)) {
    let token = match[0]
    const first = token.charCodeAt(0)
    if (token === '.' || token === ',' || token === ';' || token === ':') {
      negated = 0
      tokens.push('|')
      continue
    }
    if (token === '!' || token === '?') {
      negated = 0
      tokens.push(token)
      continue
    }
    if (first === 0x40 /* @ */) token = '<user>'
    else if (token.startsWith('http') || token.startsWith('www.')) token = '<url>'
    else if (DIGIT_RE.test(token)) token = '<num>'
    else {
      token = squeezeRuns(token.replace('\u2019', "'"))
      const bare = token.includes("'") ? token.replace("'", '') : token
      if (NEGATORS.has(bare) || token.endsWith("n't")) {
        tokens.push(bare)
        negated = NEGATION_SCOPE_WORDS
        continue
      }
      if (negated > 0) {
        negated--
        token = `not_${token}`
      }
    }
    tokens.push(token)
  }
  return tokens
}

/**
 * Bucket indices of a text's features (with repeats: a word said twice counts twice).
 * `bits` is the model's hash width; the caller scales by 1/sqrt(length) so long and short
 * texts weigh alike.
 */
export function textFeatures(text: string, bits: number): number[] {
  const mask = (1 << bits) - 1
  const tokens = featureTokens(text)
  const out: number[] = []
  let prev = -1
  for (const token of tokens) {
    if (token === '|') {
      prev = -1
      continue
    }
    const h = fnv1a(token)
    out.push(h & mask)
    if (token.length > 3 && token.charCodeAt(0) !== 0x3c /* < of a placeholder */) {
      for (let start = -1; start + CHAR_GRAM <= token.length + 1; start++) out.push(charGramHash(token, start) & mask)
    }
    if (prev !== -1) out.push(pairHash(prev, h) & mask)
    prev = h
  }
  return out
}
