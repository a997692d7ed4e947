import { describe, inject } from "@effect/vitest"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Layer, Redacted } from "effect"
import * as Credentials from "../../src/Credentials.js"
import * as HttpRegistry from "../../src/HttpRegistry.js"
import * as RateLimiter from "../../src/RateLimiter.js"
import { registryBehaviour } from "../support/registrySuite.js"

const registries = inject("registries")
const run = `r${Date.now().toString(36)}`

const httpLayer = (registry: string, credentials: Layer.Layer<Credentials.Credentials>) =>
  HttpRegistry.layerNode({ registry, retry: { maxRetries: 0 } }).pipe(
    Layer.provide(credentials),
    Layer.provide(RateLimiter.layerUnlimited)
  )

const basic = (host: string, username: string, password: string) =>
  Credentials.layerStatic({ [host]: { _tag: "Basic", username, password: Redacted.make(password) } })

describe("HttpRegistry on distribution 2.8 (plain)", () => {
  registryBehaviour({
    layer: () => httpLayer(registries.plain.host, Credentials.layerNone),
    tagDelete: "unsupported",
    repository: (name) => `${run}/plain/${name}`
  })
})

describe("HttpRegistry on distribution 2.8 (htpasswd Basic)", () => {
  const r = registries.htpasswd
  registryBehaviour({
    layer: () => httpLayer(r.host, basic(r.host, r.username, r.password)),
    tagDelete: "unsupported",
    repository: (name) => `${run}/basic/${name}`
  })
})

describe("HttpRegistry on distribution 2.8 (token auth)", () => {
  const r = registries.token
  registryBehaviour({
    layer: () => httpLayer(r.host, basic(r.host, r.username, r.password)),
    tagDelete: "unsupported",
    repository: (name) => `${run}/token/${name}`
  })
})

// `HttpRegistry.layer` over the platform's own client (any `HttpClient`): the path applications
// take when they bring a client, and `layerNode` with `transformClient`. `layerNode` alone sends
// requests straight to undici (`internal/http/nativeExchange.ts`); both must behave alike.
const platformLayer = (registry: string, credentials: Layer.Layer<Credentials.Credentials>) =>
  HttpRegistry.layer({ registry, retry: { maxRetries: 0 } }).pipe(
    Layer.provide(NodeHttpClient.layerUndici),
    Layer.provide(credentials),
    Layer.provide(RateLimiter.layerUnlimited)
  )

describe("HttpRegistry over the platform HttpClient (plain)", () => {
  registryBehaviour({
    layer: () => platformLayer(registries.plain.host, Credentials.layerNone),
    tagDelete: "unsupported",
    repository: (name) => `${run}/platform-plain/${name}`
  })
})

describe("HttpRegistry over the platform HttpClient (token auth)", () => {
  const r = registries.token
  registryBehaviour({
    layer: () => platformLayer(r.host, basic(r.host, r.username, r.password)),
    tagDelete: "unsupported",
    repository: (name) => `${run}/platform-token/${name}`
  })
})

describe("HttpRegistry.layerNode with transformClient (platform client path)", () => {
  registryBehaviour({
    layer: () =>
      HttpRegistry.layerNode({ registry: registries.plain.host, retry: { maxRetries: 0 }, transformClient: (client) => client }).pipe(
        Layer.provide(Credentials.layerNone),
        Layer.provide(RateLimiter.layerUnlimited)
      ),
    tagDelete: "unsupported",
    repository: (name) => `${run}/transformed/${name}`
  })
})
