/**
 * The library makes spans only under a tracer that keeps them: under Effect's built-in one (no
 * tracer installed) they would only cost time and garbage on every request.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Tracer } from "effect"
import { httpClientSpan, registrySpan, stateOperation } from "../src/internal/telemetry.js"

// Names of the spans current inside `self` (innermost first), as the tracer in place saw them.
const spanNames = Effect.map(Effect.option(Effect.currentSpan), (span) => {
  const names: Array<string> = []
  let current: Option.Option<Tracer.AnySpan> = Option.map(span, (s) => s as Tracer.AnySpan)
  while (Option.isSome(current)) {
    const s = current.value
    names.push(s._tag === "Span" ? s.name : "external")
    current = s._tag === "Span" ? s.parent : Option.none()
  }
  return names
})

const operation = (inner: Effect.Effect<ReadonlyArray<string>>) =>
  inner.pipe(
    Effect.map((names) => ({ names, status: 200 })),
    httpClientSpan("GET", new URL("http://127.0.0.1:5000/v2/repo/manifests/tag")),
    registrySpan("getManifest", { registry: "127.0.0.1:5000", repository: "repo", reference: "tag" }),
    stateOperation("StateManager.get", "get", {})
  )

// A tracer that is not the built-in one (what an application installs), making the same spans.
const installed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.tracer, (builtIn) =>
    Effect.withTracer(self, Tracer.make({ span: (...args) => builtIn.span(...args), context: (f) => f() })))

describe("spans", () => {
  it.effect("none under Effect's built-in tracer", () =>
    Effect.gen(function*() {
      const { names } = yield* operation(spanNames)
      expect(names).toEqual([])
    }))

  it.effect("all of them, nested, under an installed tracer", () =>
    Effect.gen(function*() {
      const { names } = yield* operation(spanNames)
      expect(names).toEqual(["http.client GET", "Registry.getManifest", "StateManager.get"])
    }).pipe(installed))
})
