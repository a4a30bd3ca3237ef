// Keyset cursors, opaque to clients: base64url of "<ISO time>|<uuid>". The insight list and
// the dead-letter list page the same way, so they share one encoding and one check.
import type { Cursor } from '../db/insights.ts'
import { badRequest } from '../errors.ts'
import { storableInstant, UUID_RE } from './schemas.ts'

export const encodeCursor = (c: Cursor) => Buffer.from(`${c.at.toISOString()}|${c.id}`).toString('base64url')

export function decodeCursor(s: string): Cursor {
  const [iso, id, extra] = Buffer.from(s, 'base64url').toString('utf8').split('|')
  const at = new Date(iso ?? '')
  if (extra !== undefined || !id || !UUID_RE.test(id) || !storableInstant(at)) {
    throw badRequest('cursor is not valid: use next_cursor from a previous page as it is')
  }
  return { at, id }
}
