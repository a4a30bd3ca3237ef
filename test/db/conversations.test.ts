// The conversations repository: ingest, leases and dead letters, on both back ends.
import { sql } from 'drizzle-orm'
import pino from 'pino'
import t from 'tap'
import { openDatabase } from '../../src/db/client.ts'
import { conversationsRepository, type NewConversation } from '../../src/db/conversations.ts'
import { sha256 } from '../../src/pipeline/normalize.ts'
import { backendEnv, backends, testConfig } from '../helper.ts'

let seq = 0
const newConversation = (over: Partial<NewConversation> = {}): NewConversation => {
  seq++
  return {
    producer: 'p1',
    source: 'web-chat',
    externalId: `ext-${seq}`,
    messages: [{ role: 'user', content: `My order ${seq} never arrived and nobody answers.` }],
    textHash: sha256(`text ${seq}`),
    status: 'pending',
    ...over
  }
}

const secondsFromNow = (d: Date | null | undefined) => (d ? (d.getTime() - Date.now()) / 1000 : Number.NaN)

for (const backend of backends()) {
  t.test(backend, async (t) => {
    // one database per back end, emptied before each test: opening PGlite takes seconds
    const database = await openDatabase(testConfig(await backendEnv(t, backend)), pino({ level: 'silent' }))
    t.teardown(() => database.close())
    const repo = conversationsRepository(database)
    t.beforeEach(async () => {
      await database.query(sql`TRUNCATE conversations, conversation_keys, conversation_queue, insights`)
    })

    const insertPending = async (n: number, over: Partial<NewConversation> = {}) =>
      (await repo.insertMany(Array.from({ length: n }, () => newConversation(over)))).map((r) => r.id)
    const get = async (id: string) => (await repo.getById(id))!
    /** the conversation's queue row: where its work stands */
    const queued = async (id: string) => (await repo.queueEntry(id))!
    const exec = (statement: ReturnType<typeof sql>) => database.query(statement)
    const idList = (ids: string[]) => `{${ids.join(',')}}`
    // claims order by the queue row's copy of received_at; both say the same
    const setReceivedAt = async (id: string, iso: string) => {
      await exec(sql`UPDATE conversations SET received_at = ${iso}::timestamptz WHERE id = ${id}`)
      await exec(sql`UPDATE conversation_queue SET received_at = ${iso}::timestamptz WHERE conversation_id = ${id}`)
    }
    const expireLeases = (ids: string[]) =>
      exec(sql`UPDATE conversation_queue SET lease_expires_at = now() - interval '1 second' WHERE conversation_id = ANY(${idList(ids)}::uuid[])`)
    /** what the store statement does to a row's queue entry once its insight is in */
    const finish = (id: string) => exec(sql`DELETE FROM conversation_queue WHERE conversation_id = ${id}`)

    t.test('insertMany stores new rows and reports each as new', async (t) => {
      const rows = [newConversation(), newConversation({ status: 'skipped', skipReason: 'too_short' })]
      const results = await repo.insertMany(rows)
      t.equal(results.length, 2)
      t.match(results[0], { id: String, status: 'pending', duplicate: false, receivedAt: Date })
      t.match(results[1], { status: 'skipped', duplicate: false })
      const stored = await get(results[0]!.id)
      t.match(stored, { source: 'web-chat', externalId: rows[0]!.externalId, status: 'pending', attempts: 0, analyzedAt: null, insight: null })
      t.same(stored.messages, rows[0]!.messages)
      t.match(await queued(results[0]!.id), { state: 'pending', attempts: 0, leaseOwner: null }, 'a pending conversation has a queue row')
      t.match(await get(results[1]!.id), { status: 'skipped', skipReason: 'too_short' })
      t.equal(await repo.queueEntry(results[1]!.id), null, 'a skipped one has none: it is never claimed')
      t.same(await repo.insertMany([]), [], 'nothing in, nothing out')
    })

    t.test('insertMany is idempotent on (producer, source, external_id) and reports the first id with its current status', async (t) => {
      const c = newConversation()
      const [first] = await repo.insertMany([c])
      await repo.claimByIds([first!.id], 'w1', 60)
      const fresh = newConversation()
      const again = await repo.insertMany([fresh, { ...c, messages: [{ role: 'user', content: 'different words this time' }] }])
      t.match(again[0], { duplicate: false }, 'a new row in the same batch is still stored')
      t.match(again[1], { id: first!.id, status: 'processing', duplicate: true })
      t.equal(again[1]!.receivedAt.getTime(), first!.receivedAt.getTime(), 'with the first receivedAt')
      t.same((await get(first!.id)).messages, c.messages, 'the stored row is unchanged')
      const count = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM conversations`)
      t.equal(Number(count[0]!.n), 2)
    })

    t.test('a key repeated inside one batch resolves to its first occurrence', async (t) => {
      const c = newConversation()
      const results = await repo.insertMany([c, newConversation(), { ...c }])
      t.equal(results[0]!.duplicate, false)
      t.match(results[2], { id: results[0]!.id, duplicate: true })
    })

    t.test('rows without external_id never collide; the same external_id under another source is new', async (t) => {
      const c = newConversation({ externalId: null })
      const a = await repo.insertMany([c, { ...c }])
      const b = await repo.insertMany([{ ...c }])
      t.equal(new Set([a[0]!.id, a[1]!.id, b[0]!.id]).size, 3)
      t.notOk(a.some((r) => r.duplicate) || b[0]!.duplicate)
      const d = newConversation()
      const [x] = await repo.insertMany([d])
      const [y] = await repo.insertMany([{ ...d, source: 'email' }])
      t.not(x!.id, y!.id)
      t.equal(y!.duplicate, false)
    })

    t.test('idempotency keys are each producer\'s own: another producer\'s key is neither squatted nor answered as a duplicate', async (t) => {
      const c = newConversation({ producer: 'alice' })
      const [mine] = await repo.insertMany([c])
      const [theirs] = await repo.insertMany([{ ...c, producer: 'bob', messages: [{ role: 'user', content: 'bob has his own ticket with this number' }] }])
      t.equal(theirs!.duplicate, false, 'the same (source, external_id) from another producer is a new conversation')
      t.not(theirs!.id, mine!.id)
      t.same((await get(theirs!.id)).messages[0]!.content, 'bob has his own ticket with this number', 'with its own text')
      const [again] = await repo.insertMany([{ ...c, messages: [{ role: 'user', content: 'resent' }] }])
      t.match(again, { id: mine!.id, duplicate: true }, 'the same producer re-posting is a duplicate')
      const found = await repo.findByKeys([c, { ...c, producer: 'carol' }])
      t.same([...found.values()].map((v) => v.id), [mine!.id], 'findByKeys looks in the given producer\'s keys only')
    })

    t.test('renewLeases extends the leases this owner holds and reports the ones it lost', async (t) => {
      const [a, b, c] = await insertPending(3)
      await repo.claimByIds([a!, b!], 'w1', 5)
      await repo.claimByIds([c!], 'w2', 5)
      await expireLeases([b!])
      t.same(await repo.reclaimExpired(5), { requeued: 1, failed: 0 }, 'b lapsed and went back to pending')
      const held = await repo.renewLeases([a!, b!, c!], 'w1', 60)
      t.same(held, [a], 'only a is still w1\'s: b was reclaimed, c is w2\'s')
      const lease = secondsFromNow((await queued(a!)).leaseExpiresAt)
      t.ok(lease > 50 && lease <= 61, `a's lease runs 60 s from now (${lease.toFixed(1)})`)
      t.ok(secondsFromNow((await queued(c!)).leaseExpiresAt) <= 5, 'another owner\'s lease is untouched')
      t.same(await repo.renewLeases([], 'w1', 60), [])
    })

    t.test('reclaimExpired({ all }) takes back every claim, live leases too (a dead process of an exclusive database)', async (t) => {
      const [a, b] = await insertPending(2)
      await repo.claimByIds([a!, b!], 'dead-process', 300)
      t.same(await repo.reclaimExpired(5), { requeued: 0, failed: 0 }, 'their leases have not run out')
      t.same(await repo.reclaimExpired(5, { all: true }), { requeued: 2, failed: 0 })
      t.match(await queued(a!), { state: 'pending', leaseOwner: null, attempts: 1 })
    })

    t.test('getById answers null for an unknown id', async (t) => {
      t.equal(await repo.getById('00000000-0000-7000-8000-000000000000'), null)
    })

    t.test('claimOldest takes the oldest pending rows first and leases them', async (t) => {
      const ids = await insertPending(5)
      const times = ['2026-01-05', '2026-01-02', '2026-01-04', '2026-01-01', '2026-01-03']
      for (const [i, id] of ids.entries()) await setReceivedAt(id, `${times[i]}T00:00:00Z`)
      const claimed = await repo.claimOldest(3, 'w1', 60)
      t.same(
        claimed.map((c) => c.id),
        [ids[3], ids[1], ids[4]],
        'the three oldest, oldest first'
      )
      t.match(claimed[0], { source: 'web-chat', attempts: 1, textHash: String, messages: Array, receivedAt: Date })
      t.equal(claimed[0]!.receivedAt.toISOString(), '2026-01-01T00:00:00.000Z')
      for (const c of claimed) {
        t.equal((await get(c.id)).status, 'processing')
        const row = await queued(c.id)
        t.equal(row.leaseOwner, 'w1')
        t.equal(row.attempts, 1)
        const lease = secondsFromNow(row.leaseExpiresAt)
        t.ok(lease > 50 && lease <= 65, `lease ends in about 60 s (${lease.toFixed(1)})`)
      }
      const rest = await repo.claimOldest(10, 'w2', 60)
      t.same(
        rest.map((c) => c.id),
        [ids[2], ids[0]],
        'a second claim gets only what is left'
      )
      t.same(await repo.claimOldest(10, 'w3', 60), [], 'nothing left to claim')
    })

    t.test('claimOldest breaks ties on received_at by id', async (t) => {
      // rows of one insertMany share received_at; the id (UUIDv7, time-ordered) decides
      const ids = await insertPending(3)
      for (const id of ids) await setReceivedAt(id, '2026-01-01T00:00:00Z')
      const claimed = await repo.claimOldest(2, 'w1', 60)
      t.same(claimed.map((c) => c.id).sort(), [...ids].sort().slice(0, 2), 'the two smallest ids')
      t.same(await repo.claimOldest(0, 'w1', 60), [], 'n = 0 claims nothing')
    })

    t.test('each claim counts as an attempt', async (t) => {
      const [id] = await insertPending(1)
      await repo.claimOldest(1, 'w1', 60)
      await repo.releaseFailed([{ id: id!, error: 'boom', delayMs: 0, final: false }], 'w1')
      const [again] = await repo.claimOldest(1, 'w2', 60)
      t.equal(again?.attempts, 2)
    })

    t.test('claimByIds claims only rows that are still pending', async (t) => {
      const [pending, held, analysedLater] = await insertPending(3)
      const [skipped] = (await repo.insertMany([newConversation({ status: 'skipped', skipReason: 'too_short' })])).map((r) => r.id)
      const [failed] = await insertPending(1)
      await repo.claimByIds([held!], 'other', 60)
      await repo.claimByIds([failed!], 'other', 60)
      await repo.releaseFailed([{ id: failed!, error: 'x', delayMs: 0, final: true }], 'other')
      await finish(analysedLater!)
      const unknown = '00000000-0000-7000-8000-000000000000'
      const claimed = await repo.claimByIds([pending!, held!, skipped!, failed!, analysedLater!, unknown], 'w1', 30)
      t.same(
        claimed.map((c) => c.id),
        [pending]
      )
      t.equal((await queued(held!)).leaseOwner, 'other', 'a row another worker holds stays theirs')
      t.equal((await get(skipped!)).status, 'skipped')
      t.equal((await get(failed!)).status, 'failed')
      t.equal((await queued(pending!)).leaseOwner, 'w1')
      t.same(await repo.claimByIds([], 'w1', 30), [])
    })

    t.test('a row whose available_at is in the future cannot be claimed yet', async (t) => {
      const [id] = await insertPending(1)
      await exec(sql`UPDATE conversation_queue SET available_at = now() + interval '1 hour' WHERE conversation_id = ${id}`)
      t.same(await repo.claimOldest(10, 'w1', 60), [], 'not by claimOldest')
      t.same(await repo.claimByIds([id!], 'w1', 60), [], 'not by claimByIds')
      await exec(sql`UPDATE conversation_queue SET available_at = now() - interval '1 second' WHERE conversation_id = ${id}`)
      t.equal((await repo.claimOldest(10, 'w1', 60)).length, 1, 'claimable once the time has come')
    })

    t.test('releaseFailed puts a row back to pending after a back-off', async (t) => {
      const [id] = await insertPending(1)
      await repo.claimByIds([id!], 'w1', 60)
      await repo.releaseFailed([{ id: id!, error: 'model timed out', delayMs: 60_000, final: false }], 'w1')
      t.match(await get(id!), { status: 'pending', lastError: 'model timed out', attempts: 1 })
      const row = await queued(id!)
      t.match(row, { state: 'pending', lastError: 'model timed out', leaseOwner: null, leaseExpiresAt: null, attempts: 1 })
      const delay = secondsFromNow(row.availableAt)
      t.ok(delay > 50 && delay <= 61, `available again in about 60 s (${delay.toFixed(1)})`)
      t.same(await repo.claimOldest(10, 'w2', 60), [], 'not claimable during the back-off')
    })

    t.test('releaseFailed with final marks the row failed (a dead letter)', async (t) => {
      const [id] = await insertPending(1)
      await repo.claimByIds([id!], 'w1', 60)
      await repo.releaseFailed([{ id: id!, error: 'x'.repeat(5000), delayMs: 0, final: true }], 'w1')
      t.match(await get(id!), { status: 'failed', attempts: 1 })
      const row = await queued(id!)
      t.match(row, { state: 'failed', leaseOwner: null, leaseExpiresAt: null, attempts: 1 })
      t.equal(row.lastError?.length, 2000, 'the error is cut to 2000 characters')
    })

    t.test('releaseFailed leaves rows another owner holds alone', async (t) => {
      const [id] = await insertPending(1)
      await repo.claimByIds([id!], 'w1', 60)
      await repo.releaseFailed([{ id: id!, error: 'late', delayMs: 0, final: true }], 'w2')
      t.match(await queued(id!), { state: 'processing', leaseOwner: 'w1', lastError: null })
    })

    t.test('releaseClaims hands rows back to pending without using an attempt', async (t) => {
      const [a, b, c] = await insertPending(3)
      await repo.claimByIds([a!, b!], 'w1', 60)
      await repo.claimByIds([c!], 'w2', 60)
      t.equal(await repo.releaseClaims([a!], 'w1'), 1)
      t.match(await queued(a!), { state: 'pending', attempts: 0, leaseOwner: null, leaseExpiresAt: null })
      t.equal((await get(b!)).status, 'processing', 'only the ids given')
      t.same(
        (await repo.claimByIds([a!], 'w3', 60)).map((r) => r.id),
        [a],
        'claimable again at once'
      )
      t.equal(await repo.releaseClaims([c!], 'w1'), 0, 'not rows another owner holds')
      t.equal(await repo.releaseClaims([], 'w1'), 0, 'an empty list releases nothing')
      t.equal((await get(b!)).status, 'processing')
    })

    t.test('releaseClaims("all") releases every claim of this owner, optionally after a delay', async (t) => {
      const [a, b, c] = await insertPending(3)
      await repo.claimByIds([a!, b!], 'w1', 60)
      await repo.claimByIds([c!], 'w2', 60)
      t.equal(await repo.releaseClaims('all', 'w1', 30_000), 2)
      t.equal((await queued(c!)).leaseOwner, 'w2', 'another owner’s claim is untouched')
      const delay = secondsFromNow((await queued(a!)).availableAt)
      t.ok(delay > 20 && delay <= 31, `available again in about 30 s (${delay.toFixed(1)})`)
      t.same(await repo.claimOldest(10, 'w3', 60), [], 'not claimable before the delay')
    })

    t.test('reclaimExpired requeues expired leases, fails those out of attempts, and leaves live leases', async (t) => {
      const [retry, spent, live] = await insertPending(3)
      await repo.claimByIds([retry!, spent!, live!], 'w1', 300)
      await exec(sql`UPDATE conversation_queue SET attempts = 3 WHERE conversation_id = ${spent}`)
      await expireLeases([retry!, spent!])
      t.same(await repo.reclaimExpired(3), { requeued: 1, failed: 1 })
      t.match(await queued(retry!), { state: 'pending', leaseOwner: null, leaseExpiresAt: null, attempts: 1 })
      t.match(await queued(spent!), { state: 'failed', leaseOwner: null, lastError: 'lease expired on the last attempt' })
      t.match(await queued(live!), { state: 'processing', leaseOwner: 'w1' })
      t.same(await repo.reclaimExpired(3), { requeued: 0, failed: 0 }, 'nothing left to reclaim')
      t.equal((await repo.claimOldest(10, 'w2', 60)).length, 1, 'the requeued row is claimable at once')
      await repo.releaseFailed([{ id: retry!, error: 'too late', delayMs: 0, final: true }], 'w1')
      t.equal((await queued(retry!)).leaseOwner, 'w2', 'the old owner can no longer touch it')
    })

    t.test('backlogCounts counts pending, processing and failed rows', async (t) => {
      t.same(await repo.backlogCounts(), { pending: 0, processing: 0, failed: 0 })
      const ids = await insertPending(6)
      await repo.insertMany([newConversation({ status: 'skipped', skipReason: 'too_short' })])
      await repo.claimByIds(ids.slice(0, 3), 'w1', 60)
      await repo.releaseFailed([{ id: ids[0]!, error: 'x', delayMs: 0, final: true }], 'w1')
      await finish(ids[1]!)
      t.same(await repo.backlogCounts(), { pending: 3, processing: 1, failed: 1 })
    })

    t.test('listDeadLetters lists failed rows newest failure first and pages by keyset exactly once', async (t) => {
      const ids = await insertPending(7)
      const [notFailed] = await insertPending(1)
      await repo.claimByIds(ids, 'w1', 60)
      await repo.releaseFailed(
        ids.map((id) => ({ id, error: `error of ${id}`, delayMs: 0, final: true })),
        'w1'
      )
      // two ties on updated_at: the id breaks them
      const at = ['2026-01-01T00:00:01Z', '2026-01-01T00:00:05Z', '2026-01-01T00:00:03Z', '2026-01-01T00:00:03Z', '2026-01-01T00:00:02Z', '2026-01-01T00:00:05Z', '2026-01-01T00:00:04Z']
      for (const [i, id] of ids.entries()) await exec(sql`UPDATE conversation_queue SET updated_at = ${at[i]}::timestamptz WHERE conversation_id = ${id}`)
      const expected = ids
        .map((id, i) => ({ id, t: Date.parse(at[i]!) }))
        .sort((a, b) => b.t - a.t || (a.id < b.id ? 1 : -1))
        .map((r) => r.id)

      const all = await repo.listDeadLetters(100)
      t.same(
        all.map((r) => r.id),
        expected
      )
      t.notOk(
        all.some((r) => r.id === notFailed),
        'only failed rows'
      )
      t.match(all[0], { id: String, source: 'web-chat', externalId: String, attempts: 1, lastError: /^error of /, receivedAt: Date, failedAt: Date })

      const seen: string[] = []
      let before: { updatedAt: Date; id: string } | undefined
      for (let page = 0; page < 10; page++) {
        const rows = await repo.listDeadLetters(2, before)
        if (rows.length === 0) break
        t.ok(rows.length <= 2)
        seen.push(...rows.map((r) => r.id))
        const last = rows[rows.length - 1]!
        before = { updatedAt: last.failedAt, id: last.id }
      }
      t.same(seen, expected, 'pages cover every dead letter once, in order')
    })

    t.test(
      'listDeadLetters pages through dead letters failed together by reclaimExpired',
      async (t) => {
        const ids = await insertPending(4)
        await repo.claimByIds(ids, 'w1', 60)
        await expireLeases(ids)
        t.same(await repo.reclaimExpired(1), { requeued: 0, failed: 4 })
        const seen: string[] = []
        let before: { updatedAt: Date; id: string } | undefined
        for (let page = 0; page < 10; page++) {
          const rows = await repo.listDeadLetters(1, before)
          if (rows.length === 0) break
          seen.push(rows[0]!.id)
          before = { updatedAt: rows[0]!.failedAt, id: rows[0]!.id }
        }
        t.same(seen, [...ids].sort().reverse())
      }
    )

    t.test('retryDeadLetter puts a failed row back in the queue with fresh attempts', async (t) => {
      const [id] = await insertPending(1)
      await repo.claimByIds([id!], 'w1', 60)
      await repo.releaseFailed([{ id: id!, error: 'x', delayMs: 0, final: true }], 'w1')
      t.same(await repo.retryDeadLetter(id!), { id, status: 'pending' })
      t.match(await get(id!), { status: 'pending', attempts: 0 })
      t.same(
        (await repo.claimOldest(1, 'w2', 60)).map((r) => r.id),
        [id],
        'claimable at once'
      )
    })

    t.test('retryDeadLetter refuses rows that are not failed', async (t) => {
      const [pending, processing] = await insertPending(2)
      await repo.claimByIds([processing!], 'w1', 60)
      t.equal(await repo.retryDeadLetter(pending!), null)
      t.equal(await repo.retryDeadLetter(processing!), null)
      t.equal(await repo.retryDeadLetter('00000000-0000-7000-8000-000000000000'), null)
      t.match(await queued(processing!), { state: 'processing', attempts: 1, leaseOwner: 'w1' })
    })

    t.test('parallel claims never return the same row and together take every row', { skip: backend !== 'postgres' && 'PGlite has one connection: claims cannot overlap' }, async (t) => {
      const total = 500
      const ids: string[] = []
      for (let i = 0; i < total; i += 100) ids.push(...(await insertPending(100)))
      const claimer = async (owner: string) => {
        const got: string[] = []
        for (;;) {
          const rows = await repo.claimOldest(7, owner, 60)
          if (rows.length === 0) return got
          got.push(...rows.map((r) => r.id))
        }
      }
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => claimer(`w${i}`)))
      const all = results.flat()
      t.equal(all.length, total, 'every claim returned a distinct row')
      t.equal(new Set(all).size, total, 'no row claimed twice')
      t.same([...new Set(all)].sort(), [...ids].sort(), 'every row claimed')
      t.ok(results.filter((r) => r.length > 0).length > 1, 'the work was actually shared')
      const owners = await database.query<{ lease_owner: string; n: number }>(
        sql`SELECT lease_owner, count(*)::int AS n FROM conversation_queue WHERE state = 'processing' GROUP BY 1`
      )
      t.same(
        Object.fromEntries(owners.map((o) => [o.lease_owner, Number(o.n)])),
        Object.fromEntries(results.map((r, i) => [`w${i}`, r.length]).filter(([, n]) => n)),
        'the database agrees on who holds what'
      )
      const attempts = await database.query<{ n: number }>(sql`SELECT count(*)::int AS n FROM conversation_queue WHERE attempts <> 1`)
      t.equal(Number(attempts[0]!.n), 0, 'each row claimed exactly once')
    })

    t.test('parallel claimByIds of the same ids never hand one row to two workers', { skip: backend !== 'postgres' && 'PGlite has one connection: claims cannot overlap' }, async (t) => {
      const ids = await insertPending(200)
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => repo.claimByIds(ids, `w${i}`, 60)))
      const all = results.flatMap((r) => r.map((c) => c.id))
      t.equal(all.length, new Set(all).size, 'no row claimed twice')
      t.equal(all.length, ids.length, 'every row claimed by someone')
    })
  })
}
