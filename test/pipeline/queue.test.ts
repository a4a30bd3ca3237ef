import t from 'tap'
import { WorkQueue } from '../../src/pipeline/queue.ts'

t.test('ids come out in the order they went in', async (t) => {
  const q = new WorkQueue(10)
  for (const id of ['a', 'b', 'c', 'd']) q.offer(id)
  t.same(q.take(10), ['a', 'b', 'c', 'd'])
  t.equal(q.size, 0)
})

t.test('take(n) takes at most n, from the front, and leaves the rest', async (t) => {
  const q = new WorkQueue(10)
  for (const id of ['a', 'b', 'c', 'd', 'e']) q.offer(id)
  t.same(q.take(2), ['a', 'b'])
  t.equal(q.size, 3)
  q.offer('f')
  t.same(q.take(3), ['c', 'd', 'e'])
  t.same(q.take(0), [])
  t.same(q.take(5), ['f'])
  t.same(q.take(5), [], 'an empty queue gives nothing')
})

t.test('offering an id already queued is a no-op that keeps its place', async (t) => {
  const q = new WorkQueue(10)
  t.equal(q.offer('a'), true)
  q.offer('b')
  t.equal(q.offer('a'), true)
  t.equal(q.size, 2)
  t.same(q.take(10), ['a', 'b'])
  t.equal(q.overflowed, false)
})

t.test('a full queue refuses new ids and marks the overflow', async (t) => {
  const q = new WorkQueue(2)
  t.equal(q.offer('a'), true)
  t.equal(q.offer('b'), true)
  t.equal(q.overflowed, false)
  t.equal(q.offer('c'), false)
  t.equal(q.overflowed, true)
  t.equal(q.size, 2, 'never grows past its capacity')
  t.same(q.take(10), ['a', 'b'], 'the refused id is not in the queue')
  t.equal(q.offer('d'), true, 'room again after a take')
  t.equal(q.overflowed, true, 'the flag stays until the worker clears it')
})

t.test('clear empties the queue', async (t) => {
  const q = new WorkQueue(5)
  q.offer('a')
  q.offer('b')
  q.clear()
  t.equal(q.size, 0)
  t.same(q.take(5), [])
})

t.test('waitForWork resolves when an id is offered', async (t) => {
  const q = new WorkQueue(5)
  const started = Date.now()
  const waiting = q.waitForWork(10_000)
  setTimeout(() => q.offer('a'), 20)
  await waiting
  t.ok(Date.now() - started < 5_000, 'well before the timeout')
})

t.test('waitForWork resolves on an explicit wake, for every waiter', async (t) => {
  const q = new WorkQueue(5)
  let resolved = 0
  const waits = [q.waitForWork(10_000), q.waitForWork(10_000)].map((p) => p.then(() => resolved++))
  await new Promise((r) => setTimeout(r, 10))
  t.equal(resolved, 0, 'nothing resolves before the wake')
  q.wake()
  await Promise.all(waits)
  t.equal(resolved, 2)
})

t.test('waitForWork resolves when an overflow is marked', async (t) => {
  const q = new WorkQueue(1)
  q.offer('a')
  const waiting = q.waitForWork(10_000)
  q.offer('b')
  await waiting
  t.equal(q.overflowed, true)
})

t.test('waitForWork resolves after its timeout with no work', async (t) => {
  const q = new WorkQueue(5)
  const started = Date.now()
  await q.waitForWork(50)
  const waited = Date.now() - started
  t.ok(waited >= 45, `waited ${waited}ms`)
})

t.test('a waiter that timed out is removed, so idle waits do not pile up', async (t) => {
  const q = new WorkQueue(5)
  for (let i = 0; i < 100; i++) await q.waitForWork(1)
  // the waiter list is private; reading it is the only way to see the leak this guards against
  t.equal((q as unknown as { waiters: unknown[] }).waiters.length, 0)
})
