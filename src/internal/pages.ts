/**
 * A paginated listing (OCI tag lists), read as a stream — lazily, a page at a time — or all at
 * once. The second needs no stream: running one costs ~500 Effect operations, more than the request
 * itself on a fast registry, and callers that need every tag anyway (lock candidates, version
 * scans) pay that on every lock.
 *
 * `page(cursor)` returns the page's items and the cursor of the next page, if any.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/** @internal */
export type Page<A, C> = readonly [ReadonlyArray<A>, Option.Option<C>]

/** @internal */
export const stream = <A, C, E, R>(first: C, page: (cursor: C) => Effect.Effect<Page<A, C>, E, R>): Stream.Stream<A, E, R> =>
  Stream.paginateChunkEffect(first, (cursor) =>
    Effect.map(page(cursor), ([items, next]) => [Chunk.unsafeFromArray(items), next] as const))

/** @internal */
export const collect = <A, C, E, R>(
  first: C,
  page: (cursor: C) => Effect.Effect<Page<A, C>, E, R>
): Effect.Effect<ReadonlyArray<A>, E, R> =>
  Effect.gen(function*() {
    const items: Array<A> = []
    let cursor = Option.some(first)
    while (Option.isSome(cursor)) {
      const [found, next] = yield* page(cursor.value)
      for (const item of found) items.push(item)
      cursor = next
    }
    return items
  })
