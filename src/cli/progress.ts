/**
 * Transfer progress on stderr for blobs over 4 MiB: a `Registry` decorator that meters blob
 * downloads (as the verified stream flows) and uploads (as the registry client pulls the body).
 *
 * On a terminal the line is redrawn in place (`\r`); otherwise (`--progress` into a pipe or file)
 * one line is printed at most every second, and a final line at the end.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { type BlobBody, Registry, type Service } from "../Registry.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly enabled: boolean
  /** stderr is a terminal: redraw one line. */
  readonly tty: boolean
}

/**
 * Transfers at least this large show progress.
 *
 * @since 0.1.0
 * @category constants
 */
export const threshold = 4 * 1024 * 1024

const chunkSize = 1024 * 1024

/**
 * @since 0.1.0
 * @category utils
 */
export const formatBytes = (n: number): string => {
  if (n < 1024) return `${n} B`
  const units = ["KiB", "MiB", "GiB", "TiB"]
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`
}

interface Meter {
  readonly restart: () => void
  readonly advance: (bytes: number) => void
  readonly finish: (ok: boolean) => void
}

const makeMeter = (label: string, total: number, tty: boolean, clock: Clock.Clock): Meter => {
  let done = 0
  let started = clock.unsafeCurrentTimeMillis()
  // The first line comes after one interval: a fast transfer shows only its final line.
  let lastDraw = started
  let finished = false
  const line = (now: number) => {
    const seconds = Math.max(0.001, (now - started) / 1000)
    const percent = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100
    return `${label}: ${formatBytes(done)} / ${formatBytes(total)} (${percent}%) ${formatBytes(Math.round(done / seconds))}/s`
  }
  const draw = (force: boolean) => {
    const now = clock.unsafeCurrentTimeMillis()
    if (!force && now - lastDraw < (tty ? 100 : 1000)) return
    lastDraw = now
    process.stderr.write(tty ? `\r\x1b[2K${line(now)}` : `${line(now)}\n`)
  }
  return {
    restart: () => {
      done = 0
      started = clock.unsafeCurrentTimeMillis()
      lastDraw = started
    },
    advance: (bytes) => {
      done += bytes
      draw(false)
    },
    finish: (ok) => {
      if (finished) return
      finished = true
      if (ok) draw(true)
      if (tty) process.stderr.write(ok ? "\n" : "\r\x1b[2K")
      else if (!ok) process.stderr.write(`${label}: interrupted at ${formatBytes(done)}\n`)
    }
  }
}

// The body as 1 MiB chunks (views, no copy) whose iteration reports progress: the registry
// client pulls the next chunk once it has taken the previous one. A new iteration (a retry)
// starts the count again.
const meteredBody = (body: BlobBody, meter: Meter): BlobBody => {
  const source = body instanceof Uint8Array ? [body] : body
  const chunks: Array<Uint8Array> = []
  for (const buffer of source) {
    for (let offset = 0; offset < buffer.byteLength; offset += chunkSize) {
      chunks.push(buffer.subarray(offset, Math.min(buffer.byteLength, offset + chunkSize)))
    }
  }
  Object.defineProperty(chunks, Symbol.iterator, {
    value: function*() {
      meter.restart()
      for (const chunk of chunks.slice()) {
        yield chunk
        meter.advance(chunk.byteLength)
      }
    }
  })
  return chunks
}

/**
 * Wrap a registry so that large blob transfers report progress.
 *
 * @since 0.1.0
 * @category combinators
 */
export const decorate = (registry: Service, options: Options, clock: Clock.Clock): Service => {
  // An upload of a large blob, with its body metered as the client pulls it.
  const metered = <E>(
    blob: { readonly size: number },
    body: BlobBody,
    send: (body: BlobBody) => Effect.Effect<void, E>
  ): Effect.Effect<void, E> =>
    blob.size < threshold
      ? send(body)
      : Effect.suspend(() => {
        const meter = makeMeter("upload", blob.size, options.tty, clock)
        return send(meteredBody(body, meter)).pipe(
          Effect.onExit((exit) => Effect.sync(() => meter.finish(exit._tag === "Success")))
        )
      })
  const getBlob: Service["getBlob"] = (repository, blob) =>
    blob.size < threshold
      ? registry.getBlob(repository, blob)
      : Stream.suspend(() => {
        const meter = makeMeter("download", blob.size, options.tty, clock)
        return registry.getBlob(repository, blob).pipe(
          Stream.tap((chunk) => Effect.sync(() => meter.advance(chunk.byteLength))),
          Stream.onDone(() => Effect.sync(() => meter.finish(true))),
          Stream.ensuring(Effect.sync(() => meter.finish(false)))
        )
      })
  return {
    ...registry,
    getBlob,
    // A whole read cannot be watched: a large one is read from the metered stream instead, into one
    // buffer of the blob's size (the stream is verified before its last chunk).
    getBlobBytes: (repository, blob) =>
      blob.size < threshold
        ? registry.getBlobBytes(repository, blob)
        : Effect.suspend(() => {
          const out = new Uint8Array(blob.size)
          let offset = 0
          return Effect.as(
            Stream.runForEach(getBlob(repository, blob), (chunk) =>
              Effect.sync(() => {
                out.set(chunk, offset)
                offset += chunk.byteLength
              })),
            out
          )
        }),
  putBlob: (repository, blob, body) => metered(blob, body, (metered) => registry.putBlob(repository, blob, metered)),
  startBlobUpload: (repository) =>
    Effect.map(registry.startBlobUpload(repository), (upload) => ({
      finish: (blob, body) => metered(blob, body, (metered) => upload.finish(blob, metered))
    }))
  }
}

/**
 * The decorator as a layer over the `Registry` below it (identity when progress is off).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Registry, never, Registry> =>
  Layer.effect(
    Registry,
    Effect.gen(function*() {
      const registry = yield* Registry
      if (!options.enabled) return registry
      const clock = yield* Effect.clock
      return decorate(registry, options, clock)
    })
  )
