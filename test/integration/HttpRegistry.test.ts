import { describe, inject } from "@effect/vitest"
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
