/**
 * Hostile input. Two parts:
 *
 * 1. Property tests (effect's `FastCheck`) on every parser that sees untrusted or user-supplied
 *    text: `WWW-Authenticate`, `Link`, OCI error bodies, token responses, manifests (state and
 *    lock), LockInfo JSON, BackendConfig (objects and environment), repository / tag / digest /
 *    reference names, workspace names and the tags derived from them, credential-helper output,
 *    docker config files, registry addresses, `Retry-After`, gzip layers. Arbitrary inputs give a
 *    value or a tagged error — never a thrown exception or a defect — and every call returns within
 *    `maxMillis` (input sizes are bounded; known pathological shapes are tried at 64 KiB).
 * 2. Targeted cases through the real stack (StateBackend → HttpRegistry → a hostile fake registry
 *    on 127.0.0.1, or MemoryRegistry): malformed, oversized and mistyped manifests, digest and size
 *    mismatches, a gzip bomb, `Link` loops, odd tag names, invalid workspace names, bad config
 *    values, garbage from credential helpers.
 *
 * Prints how many bad inputs were tried. `ORAS_STATE_SLOW_TESTS=1` runs ten times more per property.
 */
import * as NodeCommandExecutor from "@effect/platform-node/NodeCommandExecutor"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, ConfigProvider, Effect, Either, Exit, FastCheck as fc, Layer, Option, Redacted, Schema, Stream } from "effect"
import type { ServerResponse } from "node:http"
import * as Zlib from "node:zlib"
import * as BackendConfig from "../src/BackendConfig.js"
import * as CredentialHelper from "../src/CredentialHelper.js"
import * as Credentials from "../src/Credentials.js"
import * as Digest from "../src/Digest.js"
import * as DockerConfig from "../src/DockerConfig.js"
import { isOrasStateError } from "../src/Errors.js"
import * as HttpRegistry from "../src/HttpRegistry.js"
import { parseTokenResponse } from "../src/internal/http/auth.js"
import { challengeScopes, parseChallenges } from "../src/internal/http/challenge.js"
import { nextLink } from "../src/internal/http/link.js"
import { errorFromStatus, parseOciErrorBody, scrubCredentials } from "../src/internal/http/ociError.js"
import * as Reference from "../src/internal/reference.js"
import { decodeState } from "../src/internal/state/content.js"
import { candidateBytesOf, readLock } from "../src/internal/state/lockManifest.js"
import { parseManifest, readStateManifest } from "../src/internal/state/manifest.js"
import { validateWorkspace } from "../src/internal/state/workspace.js"
import * as LockInfo from "../src/LockInfo.js"
import * as MemoryRegistry from "../src/MemoryRegistry.js"
import * as RateLimiter from "../src/RateLimiter.js"
import { MediaType, Registry } from "../src/Registry.js"
import * as Retry from "../src/Retry.js"
import * as StateBackend from "../src/StateBackend.js"
import * as WireFormat from "../src/WireFormat.js"
import { tempDir } from "./support/credentialFixtures.js"
import { fakeServer, json, ociError } from "./support/fakeServer.js"

// ---------------------------------------------------------------------------------------------
// Counting, timing, judging
// ---------------------------------------------------------------------------------------------

/** Longest any single parse may take (generous: CI machines are slow; the bugs were seconds). */
const maxMillis = 250
/** Runs per property: 300, or 3000 with `ORAS_STATE_SLOW_TESTS=1`. */
const numRuns = process.env["ORAS_STATE_SLOW_TESTS"] === "1" ? 3000 : 300
const stats = { inputs: 0, properties: 0, targeted: 0, slowest: 0, slowestName: "" }

afterAll(() => {
  console.log(
    `hostile input: ${stats.inputs} bad inputs tried (${stats.properties} property checks, ${stats.targeted} targeted cases), ` +
      `0 exceptions, 0 defects, slowest parse ${stats.slowest.toFixed(1)} ms (${stats.slowestName})`
  )
})

/** Run one parse of one input: counted, timed, bounded. */
const timed = <A>(name: string, f: () => A): A => {
  const started = performance.now()
  const result = f()
  const millis = performance.now() - started
  stats.inputs++
  if (millis > stats.slowest) {
    stats.slowest = millis
    stats.slowestName = name
  }
  if (millis > maxMillis) throw new Error(`${name} took ${millis.toFixed(0)} ms (limit ${maxMillis} ms)`)
  return result
}

/** A sync Effect's exit, counted and timed. */
const exitOf = <A, E>(name: string, effect: Effect.Effect<A, E>): Exit.Exit<A, E> => timed(name, () => Effect.runSyncExit(effect))

/** Success, or a failure whose errors are all the library's tagged errors with one of `tags`. */
const assertTagged = (exit: Exit.Exit<unknown, unknown>, tags: ReadonlyArray<string>): void => {
  if (Exit.isSuccess(exit)) return
  if (Cause.isDie(exit.cause)) throw new Error(`defect: ${Cause.pretty(exit.cause)}`)
  const failures = Chunk.toArray(Cause.failures(exit.cause))
  if (failures.length === 0) throw new Error(`no failure in ${Cause.pretty(exit.cause)}`)
  for (const error of failures) {
    if (!isOrasStateError(error) || !tags.includes(error._tag)) {
      throw new Error(`unexpected failure ${String(error)} (expected ${tags.join(" | ")})`)
    }
  }
}

const property: {
  <A>(a: fc.Arbitrary<A>, predicate: (a: A) => void): void
  <A, B>(a: fc.Arbitrary<A>, b: fc.Arbitrary<B>, predicate: (a: A, b: B) => void): void
  <A, B, C>(a: fc.Arbitrary<A>, b: fc.Arbitrary<B>, c: fc.Arbitrary<C>, predicate: (a: A, b: B, c: C) => void): void
} = (...args: ReadonlyArray<unknown>) => {
  stats.properties++
  const make = fc.property as unknown as (...a: ReadonlyArray<unknown>) => fc.IProperty<unknown>
  fc.assert(make(...args), { numRuns })
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

const anyText = (maxLength = 1000) =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: "binary", maxLength }),
    fc.string({ unit: "grapheme", maxLength: Math.ceil(maxLength / 4) })
  )

/** Strings assembled from fragments that matter to a grammar (more interesting than random text). */
const soup = (fragments: ReadonlyArray<string>, maxLength = 40) =>
  fc.array(fc.constantFrom(...fragments), { maxLength }).map((parts) => parts.join(""))

const anyJson = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null")

/** Every JS value fast-check makes, including BigInt, null prototypes, Maps, sparse arrays, dates. */
const anyValue = fc.anything({
  maxDepth: 3,
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withNullPrototype: true,
  withObjectString: true,
  withSet: true,
  withSparseArray: true,
  withTypedArray: true
})

const encoder = new TextEncoder()
const bytesOf = (s: string) => encoder.encode(s)

/** Pathological 64 KiB inputs: the shapes that made regex-based parsers quadratic. */
const pathological = (unit: string) => unit.repeat(Math.ceil((64 * 1024) / unit.length))

// ---------------------------------------------------------------------------------------------
// 1. Parsers
// ---------------------------------------------------------------------------------------------

describe("property: HTTP header and body parsers", () => {
  const challengeFragments = [
    "Bearer", "Basic", "Digest", "bearer", " ", "\t", ",", "=", "\"", "\\", "realm", "service", "scope", "error",
    "insufficient_scope", "https://auth.example/token", "repository:a/b:pull,push", "__proto__", "constructor", "é", "\u0000"
  ]

  it("WWW-Authenticate: any header gives well-formed challenges", () => {
    property(fc.oneof(anyText(), soup(challengeFragments)), (header) => {
      const challenges = timed("parseChallenges", () => parseChallenges(header))
      for (const c of challenges) {
        expect(c.scheme).toMatch(/^[!#$%&'*+\-.^_`|~0-9a-z]+$/)
        for (const value of Object.values(c.params)) expect(typeof value).toBe("string")
        for (const scope of challengeScopes(c)) expect(scope.length).toBeGreaterThan(0)
      }
    })
  })

  it("WWW-Authenticate: quoted parameters round-trip whatever they hold", () => {
    const quote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`
    property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 50 }), fc.string({ maxLength: 200 }), (realm, service, scope) => {
      const header = `Bearer realm=${quote(realm)},service=${quote(service)}, scope=${quote(scope)}`
      const [challenge] = timed("parseChallenges", () => parseChallenges(header))
      expect(challenge?.scheme).toBe("bearer")
      expect(challenge?.params).toEqual({ realm, service, scope })
    })
  })

  it("Link: any header gives no link or an http(s) URL", () => {
    const base = new URL("https://registry.example/v2/r/tags/list?n=10")
    const fragments = [
      "<", ">", ";", ",", " ", "rel", "=", "\"", "next", "prev", "\\", "/v2/r/tags/list?n=1&last=a",
      "http://h/x", "javascript:alert(1)", "file:///etc/passwd", "data:,x", "//evil.example/x"
    ]
    property(fc.oneof(anyText(), soup(fragments)), (header) => {
      const url = timed("nextLink", () => nextLink(header, base))
      if (url !== undefined) expect(["http:", "https:"]).toContain(url.protocol)
    })
  })

  it("OCI error bodies: printable, bounded, and the request's credentials never survive", () => {
    const secretArb = fc.string({ unit: fc.constantFrom(..."abcdefXYZ0123456789+/=-_."), minLength: 6, maxLength: 40 })
    const body = fc.tuple(secretArb, anyText(200), anyText(200), fc.constantFrom("code", "message"), fc.boolean()).map(
      ([secret, before, after, field, basic]) => {
        const credential = basic ? `Basic ${Buffer.from(`user:${secret}`).toString("base64")}` : `Bearer ${secret}`
        const said = `${before}${basic ? secret : credential}${after}`
        return { credential, secret, text: JSON.stringify({ errors: [{ code: field === "code" ? said : "DENIED", message: said }] }) }
      }
    )
    property(body, ({ credential, secret, text }) => {
      const parsed = timed("parseOciErrorBody", () => parseOciErrorBody(text, [credential]))
      for (const part of [parsed.code, parsed.message]) {
        if (part === undefined) continue
        expect(part).toMatch(/^[\x20-\x7e]*…?$/)
        expect(part.length).toBeLessThanOrEqual(301)
        expect(part).not.toContain(secret)
      }
    })
    property(fc.oneof(anyText(), anyJson), (text) => {
      const parsed = timed("parseOciErrorBody", () => parseOciErrorBody(text))
      for (const part of [parsed.code, parsed.message]) if (part !== undefined) expect(part.length).toBeLessThanOrEqual(301)
    })
    property(fc.integer({ min: 0, max: 999 }), fc.option(fc.nat()), (status, retryAfter) => {
      const error = errorFromStatus("op", status, { code: undefined, message: undefined }, retryAfter ?? undefined)
      expect(["TransientRegistry", "RegistryError", "Unauthorized", "Unsupported"]).toContain(error._tag)
    })
  })

  it("credential scrubbing: linear time, and the same result as the regular expressions it replaced", () => {
    const reference = (text: string) =>
      text
        .replace(/\b(basic|bearer)(\s+)(?=[A-Za-z]*[0-9+/=_~-])[A-Za-z0-9._~+/=-]{8,}/gi, "$1$2<redacted>")
        .replace(/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, "<redacted>")
    const fragments = ["eyJ", "eyJhbGciOi", "a", "Z", "9", "-", "_", ".", " ", "Bearer ", "basic ", "x.y", "é", "\n"]
    property(fc.oneof(soup(fragments, 60), anyText(300)), (text) => {
      expect(timed("scrubCredentials", () => scrubCredentials(text, []))).toBe(reference(text))
    })
    for (const unit of ["eyJ-", "eyJa.", "eyJa.b", "bearer ", "Basic a", "-eyJ", "eyJ_.eyJ_"]) {
      stats.targeted++
      timed(`scrubCredentials(${JSON.stringify(unit)}×)`, () => scrubCredentials(pathological(unit), ["s3cret-value"]))
      timed(`parseOciErrorBody(${JSON.stringify(unit)}×)`, () =>
        parseOciErrorBody(JSON.stringify({ errors: [{ code: pathological(unit), message: pathological(unit) }] }), ["s3cret-value"]))
    }
  })

  it("token responses: a token and a sane lifetime, or RegistryError", () => {
    const structured = fc.record({ token: anyValue, access_token: anyValue, expires_in: anyValue }, { requiredKeys: [] })
      .map((o) => {
        try {
          return JSON.stringify(o) ?? "null"
        } catch {
          return "{}"
        }
      })
    property(fc.oneof(anyText(), anyJson, structured), (text) => {
      const exit = exitOf("parseTokenResponse", parseTokenResponse(text, "fetchToken"))
      assertTagged(exit, ["RegistryError"])
      if (Exit.isSuccess(exit)) {
        expect(Redacted.value(exit.value.token).length).toBeGreaterThan(0)
        expect(exit.value.expiresInSeconds).toBeGreaterThan(0)
        expect(exit.value.expiresInSeconds).toBeLessThanOrEqual(86_400)
      }
    })
  })

  it("Retry-After: undefined or 0–24 h", () => {
    property(fc.oneof(anyText(100), soup(["Sun, ", "06 Nov 1994 ", "08:49:37 ", "GMT", "-", "1", "99999999999", " "])), (value) => {
      const millis = timed("parseRetryAfter", () => Retry.parseRetryAfter(value, 1_700_000_000_000))
      if (millis !== undefined) {
        expect(millis).toBeGreaterThanOrEqual(0)
        expect(millis).toBeLessThanOrEqual(86_400_000)
      }
    })
  })
})

describe("property: manifests and lock records", () => {
  const layerTypes = [...Object.values(WireFormat.LayerMediaType), MediaType.ociEmpty, "application/vnd.oci.image.layer.v1.tar"]
  const digestArb = fc.oneof(
    fc.constant(Digest.emptyJsonDigest as string),
    fc.stringMatching(/^sha256:[a-f0-9]{64}$/),
    fc.stringMatching(/^sha(256|512):[A-Fa-f0-9]{0,70}$/),
    fc.string({ maxLength: 80 })
  )
  const descriptorArb = fc.record({
    mediaType: fc.oneof(fc.constantFrom(...layerTypes), fc.string({ maxLength: 40 }), anyValue),
    digest: fc.oneof(digestArb, anyValue),
    size: fc.oneof(fc.nat(), fc.integer(), fc.double(), fc.constant(2 ** 53), fc.string({ maxLength: 5 })),
    data: fc.oneof(fc.constant("e30="), fc.string({ maxLength: 10 })),
    annotations: fc.oneof(fc.dictionary(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), { maxKeys: 3 }), anyValue)
  }, { requiredKeys: [] })
  const annotationKeys = [...Object.values(WireFormat.Annotation), "io.oras-state.lock.candidate", "io.oras-state.lock.expires"]
  const annotationValue = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.nat().map(String),
    fc.constantFrom("{\"lease_expiry\":1700000000000000000}", "{\"lease_expiry\":-1}", "{}", "null", "[", LockInfo.toJson(LockInfo.make({ ID: "x" }))),
    anyJson
  )
  const manifestArb = fc.record({
    schemaVersion: fc.oneof(fc.constant(2), fc.constant(1), anyValue),
    mediaType: fc.oneof(fc.constantFrom(MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest), fc.string({ maxLength: 30 })),
    artifactType: fc.oneof(fc.constantFrom(...Object.values(WireFormat.ArtifactType), ""), fc.string({ maxLength: 30 })),
    config: fc.oneof(descriptorArb, anyValue),
    layers: fc.oneof(fc.array(descriptorArb, { maxLength: 3 }), anyValue),
    annotations: fc.oneof(
      fc.dictionary(fc.oneof(fc.constantFrom(...annotationKeys), fc.string({ maxLength: 20 })), annotationValue, { maxKeys: 6 }),
      anyValue
    )
  }, { requiredKeys: [] }).map((m) => {
    try {
      return bytesOf(JSON.stringify(m) ?? "null")
    } catch {
      return bytesOf("{}")
    }
  })
  const anyManifestBytes = fc.oneof(manifestArb, fc.uint8Array({ maxLength: 2048 }), anyJson.map(bytesOf), anyText().map(bytesOf))

  it("parseManifest / readStateManifest: a strict reading or CorruptState", () => {
    property(anyManifestBytes, (bytes) => {
      assertTagged(exitOf("parseManifest", parseManifest(bytes, "sha256:x")), ["CorruptState"])
      const exit = exitOf("readStateManifest", readStateManifest(bytes, "sha256:x"))
      assertTagged(exit, ["CorruptState"])
      if (Exit.isSuccess(exit)) {
        const state = exit.value
        expect(["", WireFormat.ArtifactType.state, WireFormat.ArtifactType.legacyState]).toContain(state.manifest.artifactType ?? "")
        if (state.manifest.layers.length > 0) expect(state.layer?.kind).toMatch(/^(raw|gzip)$/)
        expect(Digest.isDigest(state.layer?.descriptor.digest ?? Digest.emptyJsonDigest)).toBe(true)
        if (state.version !== undefined) expect(Number.isSafeInteger(state.version) && state.version > 0).toBe(true)
      } else {
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        expect(error.digest).toBe("sha256:x")
      }
    })
  })

  it("readLock / candidateBytesOf: a lock record or CorruptState", () => {
    property(anyManifestBytes, (bytes) => {
      const exit = exitOf("readLock", readLock(bytes, "sha256:x"))
      assertTagged(exit, ["CorruptState"])
      if (Exit.isSuccess(exit)) {
        for (const value of Object.values(exit.value.info)) expect(typeof value).toBe("string")
        if (exit.value.expiresAt !== undefined) expect(Number.isFinite(exit.value.expiresAt)).toBe(true)
      }
      const candidate = timed("candidateBytesOf", () => candidateBytesOf(bytes))
      if (candidate !== undefined) expect(candidate).toBeInstanceOf(Uint8Array)
    })
  })

  it("LockInfo JSON: decoded to seven strings or refused; any info round-trips", () => {
    const decode = Schema.decodeUnknownEither(LockInfo.LockInfoFromJson)
    property(fc.oneof(anyText(), anyJson, fc.record({ ID: anyValue, Who: anyValue }).map((o) => {
      try {
        return JSON.stringify(o) ?? ""
      } catch {
        return ""
      }
    })), (text) => {
      const result = timed("LockInfoFromJson", () => decode(text))
      if (Either.isRight(result)) for (const value of Object.values(result.right)) expect(typeof value).toBe("string")
    })
    const info = fc.record({
      ID: fc.string(), Operation: fc.string(), Info: fc.string({ unit: "binary" }), Who: fc.string(), Version: fc.string(),
      Created: fc.string(), Path: fc.string()
    })
    property(info, (i) => {
      expect(timed("LockInfo round trip", () => decode(LockInfo.toJson(i)))).toEqual(Either.right(i))
    })
  })

  it("gzip layers: garbage is CorruptState, never a defect", async () => {
    stats.properties++
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.boolean(), async (bytes, gzipHeader) => {
        // Half of the inputs start like gzip, so the decoder gets past the magic number.
        const data = gzipHeader ? new Uint8Array([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, ...bytes]) : bytes
        stats.inputs++
        const exit = await Effect.runPromiseExit(
          decodeState(Stream.make(data), { maxSize: 1024 * 1024, sizeHint: undefined, digest: "sha256:x" })
        )
        assertTagged(exit, ["CorruptState", "StateTooLarge"])
      }),
      { numRuns: 100 }
    )
  })
})

describe("property: configuration and names", () => {
  const keys = [
    "repository", "insecure", "ca_file", "retry_max", "retry_wait_min", "retry_wait_max", "compression", "lock_ttl",
    "rate_limit", "rate_limit_burst", "versioning", "max_versions", "max_state_size", "user_agent"
  ]
  const repositoryArb = fc.oneof(
    fc.constantFrom("ghcr.io/org/state", "localhost:5000/a/b", "http://127.0.0.1:5000/x", "[::1]:5000/r"),
    soup(["ghcr.io", "/", ":", "5000", "http://", "https://", "a", "B", "-", "_", "..", "@", "sha256:", "[", "]", " ", "é"]),
    anyText(200)
  )
  const configArb = fc.dictionary(
    fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 10 })),
    fc.oneof(anyValue, repositoryArb, fc.double(), fc.integer(), fc.boolean(), fc.constantFrom("gzip", "GZIP ", "zstd", "")),
    { maxKeys: 6 }
  ).map((o) => (Math.random() < 0.8 ? { repository: "ghcr.io/org/state", ...o } : o))

  it("BackendConfig.decode: any value gives a config or InvalidConfig (BigInt, cycles and null prototypes too)", () => {
    property(fc.oneof(anyValue, configArb), (input) => {
      const exit = exitOf("BackendConfig.decode", Effect.suspend(() => BackendConfig.decode(input)))
      assertTagged(exit, ["InvalidConfig"])
      if (Exit.isSuccess(exit)) {
        const config = exit.value
        expect(BackendConfig.parseRepository(config.repository)).toBeDefined()
        for (const n of [config.retry_max, config.retry_wait_min, config.retry_wait_max, config.lock_ttl, config.max_state_size]) {
          expect(Number.isFinite(n) && n >= 0).toBe(true)
        }
        expect(["none", "gzip"]).toContain(config.compression)
      }
    })
    // Values JSON cannot show, inside a config that fails.
    const cyclic: Record<string, unknown> = { repository: "ghcr.io/org/state" }
    cyclic["versioning"] = { enabled: cyclic }
    const nullProto = Object.create(null) as Record<string, unknown>
    nullProto["self"] = nullProto
    const deep = JSON.parse(`${"[".repeat(200_000)}${"]".repeat(200_000)}`) as unknown
    for (const input of [{ repository: "h/r", retry_max: 10n }, cyclic, { repository: "h/r", versioning: nullProto }, Symbol("x"), { repository: "h/r", lock_ttl: deep }, deep]) {
      stats.targeted++
      assertTagged(exitOf("BackendConfig.decode", Effect.suspend(() => BackendConfig.decode(input))), ["InvalidConfig"])
    }
  })

  it("BackendConfig.fromEnv: any variable values give a config or InvalidConfig", () => {
    const names = ["REPOSITORY", "INSECURE", "RETRY_MAX", "RETRY_WAIT_MIN", "COMPRESSION", "LOCK_TTL", "VERSIONING_ENABLED",
      "VERSIONING_MAX_VERSIONS", "MAX_VERSIONS", "MAX_STATE_SIZE", "RATE_LIMIT_BURST"]
    const envArb = fc.dictionary(
      fc.constantFrom(...names).map((n) => `TF_BACKEND_ORAS_${n}`),
      fc.oneof(anyText(40), fc.constantFrom("1e999", "-1", "0x10", "NaN", " 3 ", "true", "yes", "2.5", "ghcr.io/a/b")),
      { maxKeys: 5 }
    )
    property(envArb, (env) => {
      const provider = ConfigProvider.fromMap(new Map(Object.entries(env)))
      const exit = exitOf("BackendConfig.fromEnv", Effect.withConfigProvider(BackendConfig.fromEnv(), provider))
      assertTagged(exit, ["InvalidConfig"])
    })
  })

  it("repository / tag / digest / reference validation agrees with the OCI grammar", () => {
    const component = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
    const tagGrammar = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
    const nameSoup = soup(["a", "z", "0", "9", ".", "_", "__", "-", "--", "/", "A", ":", "@", " ", "é", "\u0000"], 30)
    property(fc.oneof(nameSoup, anyText(300)), (name) => {
      const exit = exitOf("validateRepository", Reference.validateRepository(name))
      assertTagged(exit, ["InvalidReference"])
      expect(Exit.isSuccess(exit)).toBe(name.length > 0 && name.length <= 255 && name.split("/").every((c) => component.test(c)))
      const tag = exitOf("validateTag", Reference.validateTag(name))
      assertTagged(tag, ["InvalidReference"])
      expect(Exit.isSuccess(tag)).toBe(tagGrammar.test(name))
      const digest = exitOf("validateDigest", Reference.validateDigest(name))
      assertTagged(digest, ["InvalidReference"])
      expect(Exit.isSuccess(digest)).toBe(/^sha256:[a-f0-9]{64}$/.test(name))
      assertTagged(exitOf("validateReference", Reference.validateReference(name)), ["InvalidReference"])
    })
    property(fc.stringMatching(tagGrammar), (tag) => {
      expect(Exit.isSuccess(exitOf("validateReference", Reference.validateReference(tag)))).toBe(true)
    })
  })

  it("workspace names: valid ones map to tags that are all valid and ≤ 128; invalid ones are InvalidReference", () => {
    const tagGrammar = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
    const nameArb = fc.oneof(
      fc.string({ unit: "binary", maxLength: 1100 }),
      fc.string({ unit: "grapheme", maxLength: 400 }),
      fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{80,140}$/),
      soup(["a", "-v", "1", "2", "ws-", "state-", "stver-", ".", "/", "..", " ", "\u0000", "\u007f", "é", "😀", "A"], 60)
    )
    property(nameArb, (name) => {
      const exit = exitOf("validateWorkspace", validateWorkspace(name))
      assertTagged(exit, ["InvalidReference"])
      const invalid = name.length === 0 || Buffer.byteLength(name) > 1024 || /[\u0000-\u001f\u007f]/.test(name)
      expect(Exit.isFailure(exit)).toBe(invalid)
      if (Exit.isSuccess(exit)) {
        const ws = exit.value
        expect(WireFormat.workspaceTag(name)).toBe(ws.wsTag)
        const derived = [
          ws.state, ws.lock, ws.unlocked,
          WireFormat.versionTag(ws.wsTag, WireFormat.maxVersion),
          WireFormat.legacyVersionTag(ws.wsTag, WireFormat.maxVersion),
          `lockc-${WireFormat.workspaceHash(name)}-${"f".repeat(16)}`
        ]
        for (const tag of derived) {
          expect(tag.length).toBeLessThanOrEqual(128)
          expect(tag).toMatch(tagGrammar)
        }
        expect(WireFormat.parseVersionTag(ws.wsTag, WireFormat.versionTag(ws.wsTag, 7))).toBe(7)
      }
    })
  })

  it("registry addresses: an endpoint or InvalidConfig, and a password in them is never echoed", () => {
    const addressArb = fc.oneof(
      anyText(200),
      soup(["https://", "http://", "ftp://", "registry.example", "127.0.0.1", ":5000", "/", "?x=1", "#f", "@", "[::1]", " ", "%"]),
      fc.tuple(fc.constantFrom("", "https://", "http://", "  "), fc.string({ unit: fc.constantFrom(..."abcXYZ019-_.!~*'()"), minLength: 8, maxLength: 30 }))
        .map(([scheme, password]) => `${scheme}alice:${password}@registry.example`)
    )
    property(addressArb, (address) => {
      const exit = exitOf("parseEndpoint", HttpRegistry.parseEndpoint(address))
      assertTagged(exit, ["InvalidConfig"])
      if (Exit.isSuccess(exit)) expect(exit.value.origin).toMatch(/^https?:\/\//)
      const password = /alice:([^@]+)@/.exec(address)?.[1]
      if (Exit.isFailure(exit) && password !== undefined) {
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        expect(`${error.message} ${JSON.stringify(error)}`).not.toContain(password)
      }
    })
    for (const unit of [" ", "/", "a", "@", "http://"]) {
      stats.targeted++
      assertTagged(exitOf(`parseEndpoint(${JSON.stringify(unit)}×)`, HttpRegistry.parseEndpoint(pathological(unit))), ["InvalidConfig"])
      timed(`parseRepository(${JSON.stringify(unit)}×)`, () => BackendConfig.parseRepository(pathological(unit)))
    }
  })
})

describe("property: credential sources", () => {
  const secretArb = fc.string({ unit: fc.constantFrom(..."abcdefXYZ0123456789+/=-_.!"), minLength: 8, maxLength: 40 })

  it("credential-helper output: a credential or a reason that never quotes the secret", () => {
    const outputArb = fc.oneof(
      anyText(),
      anyJson,
      fc.tuple(fc.oneof(fc.string(), fc.constant("<token>"), fc.constant(""), anyValue), secretArb, anyValue).map(([user, secret, url]) => {
        let text: string
        try {
          text = JSON.stringify({ ServerURL: url, Username: user, Secret: secret }) ?? ""
        } catch {
          text = JSON.stringify({ Username: "u", Secret: secret })
        }
        // Also every truncation of it (a helper killed mid-write).
        return text.slice(0, Math.floor(Math.random() * (text.length + 1)))
      })
    )
    property(outputArb, (text) => {
      const parsed = timed("CredentialHelper.parseOutput", () => CredentialHelper.parseOutput(text))
      if (parsed._tag === "Malformed") {
        const secret = /"Secret":"([^"]{8,})"/.exec(text)?.[1]
        if (secret !== undefined) expect(parsed.reason).not.toContain(secret)
      }
    })
  })

  it("docker config files: parsed or refused, never quoting a secret", () => {
    const entryArb = fc.record({
      auth: fc.oneof(secretArb.map((s) => Buffer.from(`user:${s}`).toString("base64")), secretArb, anyValue),
      username: fc.oneof(fc.string({ maxLength: 10 }), anyValue),
      password: fc.oneof(secretArb, anyValue),
      identitytoken: fc.oneof(secretArb, anyValue),
      registrytoken: fc.oneof(secretArb, anyValue)
    }, { requiredKeys: [] })
    const configArb = fc.record({
      auths: fc.oneof(fc.dictionary(fc.oneof(fc.constantFrom("ghcr.io", "https://index.docker.io/v1/", "localhost:5000/a"), fc.string()), fc.oneof(entryArb, anyValue), { maxKeys: 3 }), anyValue),
      credHelpers: fc.oneof(fc.dictionary(fc.string({ maxLength: 20 }), fc.oneof(fc.string({ maxLength: 20 }), anyValue), { maxKeys: 3 }), anyValue),
      credsStore: fc.oneof(fc.string({ maxLength: 20 }), anyValue)
    }, { requiredKeys: [] }).map((o) => {
      try {
        return JSON.stringify(o) ?? "{}"
      } catch {
        return "{}"
      }
    })
    property(fc.oneof(configArb, anyText(), anyJson), (text) => {
      const secrets = [...text.matchAll(/"(?:password|identitytoken|registrytoken|auth)":"([^"]{8,})"/g)].map((m) => m[1]!)
      const parsed = timed("DockerConfig.parse", () => DockerConfig.parse(text, "config.json"))
      if (Either.isLeft(parsed)) {
        for (const secret of secrets) expect(parsed.left).not.toContain(secret)
        return
      }
      for (const { entry } of parsed.right.auths) {
        const credential = timed("DockerConfig.entryCredential", () => DockerConfig.entryCredential(entry))
        if (Either.isLeft(credential)) for (const secret of secrets) expect(credential.left).not.toContain(secret)
      }
    })
    stats.targeted += 2
    const deep = `{"auths":{"ghcr.io":${"[".repeat(200_000)}${"]".repeat(200_000)}}}`
    expect(Either.isLeft(timed("DockerConfig deep nesting", () => DockerConfig.parse(deep, "config.json")))).toBe(true)
    const nuls = Buffer.from(`user:${"\u0000".repeat(48 * 1024)}x`).toString("base64")
    timed("DockerConfig NUL run", () => DockerConfig.parse(JSON.stringify({ auths: { "ghcr.io": { auth: nuls } } }), "config.json"))
  })
})

// ---------------------------------------------------------------------------------------------
// 2. Targeted cases through the real stack
// ---------------------------------------------------------------------------------------------

const sha = (data: Uint8Array) => Digest.sha256(data)
const ociHeaders = { "content-type": MediaType.ociManifest }

const stateManifest = (layer: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  bytesOf(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: WireFormat.ArtifactType.state,
    config: { mediaType: MediaType.ociEmpty, digest: Digest.emptyJsonDigest, size: 2 },
    layers: [layer],
    annotations: { [WireFormat.Annotation.workspace]: "default" },
    ...extra
  }))

interface HostileCase {
  readonly name: string
  readonly manifest: Uint8Array
  readonly headers?: Record<string, string>
  readonly blobs?: ReadonlyArray<readonly [string, Uint8Array]>
  readonly expect: ReadonlyArray<string>
}

const send = (res: ServerResponse, status: number, body: Uint8Array, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-length": String(body.byteLength), ...headers })
  res.end(body)
}

describe("targeted: a hostile registry behind StateBackend", () => {
  const good = bytesOf(JSON.stringify({ version: 4, serial: 1 }))
  const other = bytesOf(JSON.stringify({ version: 4, serial: 2 }))
  const raw = (data: Uint8Array, mediaType: string = WireFormat.LayerMediaType.state) => ({ mediaType, digest: sha(data), size: data.byteLength })
  const bomb = Zlib.gzipSync(Buffer.alloc(16 * 1024 * 1024), { level: 9 })
  const garbageGzip = new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  const smallGzip = Zlib.gzipSync(Buffer.from(good))
  const nested = bytesOf(`${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}`)

  const cases: ReadonlyArray<HostileCase> = [
    { name: "not JSON", manifest: bytesOf("<html>502 Bad Gateway</html>"), expect: ["CorruptState"] },
    { name: "JSON null", manifest: bytesOf("null"), expect: ["CorruptState"] },
    { name: "JSON array", manifest: bytesOf("[1,2,3]"), expect: ["CorruptState"] },
    { name: "a million nested arrays", manifest: nested, expect: ["CorruptState"] },
    { name: "invalid UTF-8", manifest: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), expect: ["CorruptState"] },
    { name: "schemaVersion 1", manifest: stateManifest(raw(good), { schemaVersion: 1 }), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "an image index", manifest: stateManifest(raw(good), { mediaType: MediaType.ociIndex }), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "artifactType of a lock", manifest: stateManifest(raw(good), { artifactType: WireFormat.ArtifactType.lock }), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "artifactType of something else", manifest: stateManifest(raw(good), { artifactType: "application/vnd.cncf.helm.config.v1+json" }), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "a container image layer", manifest: stateManifest(raw(good, "application/vnd.oci.image.layer.v1.tar+gzip")), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "a malformed layer digest", manifest: stateManifest({ ...raw(good), digest: "sha256:XYZ" }), expect: ["CorruptState"] },
    { name: "a negative layer size", manifest: stateManifest({ ...raw(good), size: -1 }), expect: ["CorruptState"] },
    { name: "a fractional layer size", manifest: stateManifest({ ...raw(good), size: 1.5 }), expect: ["CorruptState"] },
    { name: "a layer size of 1e300", manifest: stateManifest({ ...raw(good), size: 1e300 }), expect: ["CorruptState", "StateTooLarge"] },
    { name: "non-string annotations", manifest: stateManifest(raw(good), { annotations: { [WireFormat.Annotation.workspace]: 42 } }), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "another workspace's state", manifest: stateManifest(raw(good), { annotations: { [WireFormat.Annotation.workspace]: "prod" } }), blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "a manifest over 4 MiB", manifest: stateManifest(raw(good), { annotations: { pad: "x".repeat(4 * 1024 * 1024) } }), expect: ["CorruptState"] },
    { name: "a lying Docker-Content-Digest", manifest: stateManifest(raw(good)), headers: { "docker-content-digest": sha(other) }, blobs: [[sha(good), good]], expect: ["CorruptState"] },
    { name: "layer bytes that do not match the digest", manifest: stateManifest(raw(good)), blobs: [[sha(good), bytesOf(JSON.stringify({ version: 4, serial: 9 }))]], expect: ["CorruptState"] },
    { name: "a layer longer than declared", manifest: stateManifest(raw(good)), blobs: [[sha(good), bytesOf(`${new TextDecoder().decode(good)}   `)]], expect: ["CorruptState"] },
    { name: "a missing layer blob", manifest: stateManifest(raw(good)), expect: ["RegistryError"] },
    {
      name: "a gzip bomb (16 MiB of zeros) over max_state_size",
      manifest: stateManifest(raw(bomb, WireFormat.LayerMediaType.stateGzip)),
      blobs: [[sha(bomb), bomb]],
      expect: ["StateTooLarge"]
    },
    {
      name: "a gzip bomb whose size annotation lies",
      manifest: stateManifest({ ...raw(bomb, WireFormat.LayerMediaType.stateGzip), annotations: { [WireFormat.Annotation.uncompressedSize]: "100" } }),
      blobs: [[sha(bomb), bomb]],
      expect: ["StateTooLarge", "CorruptState"]
    },
    { name: "gzip garbage", manifest: stateManifest(raw(garbageGzip, WireFormat.LayerMediaType.stateGzip)), blobs: [[sha(garbageGzip), garbageGzip]], expect: ["CorruptState"] },
    {
      name: "gzip with a wrong decompressed size",
      manifest: stateManifest({ ...raw(smallGzip, WireFormat.LayerMediaType.stateGzip), annotations: { [WireFormat.Annotation.uncompressedSize]: "3" } }),
      blobs: [[sha(smallGzip), smallGzip]],
      expect: ["CorruptState"]
    }
  ]

  const backendOn = (host: string, maxStateSize = 1024 * 1024) =>
    StateBackend.layer({ repository: "r", maxStateSize }).pipe(
      Layer.provide(HttpRegistry.layerNode({ registry: host, retry: { maxRetries: 0 }, requestTimeout: "5 seconds", idleTimeout: "5 seconds" }).pipe(
        Layer.provide(Credentials.layerNone),
        Layer.provide(RateLimiter.layerUnlimited)
      ))
    )

  it.scopedLive("malformed, oversized and mistyped manifests, digest and size mismatches, gzip bombs: tagged errors", () =>
    Effect.gen(function*() {
      let current: HostileCase = cases[0]!
      const server = yield* fakeServer((req, res) => {
        if (req.path === "/v2/r/manifests/state-default") {
          return send(res, 200, req.method === "HEAD" ? new Uint8Array(0) : current.manifest, { ...ociHeaders, ...current.headers })
        }
        const blob = current.blobs?.find(([digest]) => req.path === `/v2/r/blobs/${digest}`)
        if (blob !== undefined) return send(res, 200, blob[1], { "content-type": "application/octet-stream" })
        return ociError(res, 404, "NOT_FOUND", "unknown")
      })
      for (const c of cases) {
        current = c
        stats.targeted++
        stats.inputs++
        const started = performance.now()
        const exit = yield* Effect.exit(
          Effect.flatMap(StateBackend.StateBackend, (b) => Effect.flatMap(b.stateManager("default"), (sm) => sm.get)).pipe(
            Effect.provide(backendOn(server.host))
          )
        )
        const millis = performance.now() - started
        expect({ case: c.name, success: Exit.isSuccess(exit) }).toEqual({ case: c.name, success: false })
        try {
          assertTagged(exit, c.expect)
        } catch (error) {
          throw new Error(`${c.name}: ${String(error)}`)
        }
        expect({ case: c.name, fast: millis < 5_000 }).toEqual({ case: c.name, fast: true })
      }
    }), 60_000)

  it.scopedLive("tag listings: Link loops, garbage pages and odd tag names", () =>
    Effect.gen(function*() {
      let mode: "loop" | "garbage" | "odd" | "huge" = "loop"
      const odd = [
        "state-default", "state-", "state-a b", "state-../../etc", "state-ws-zzz", "state-ws-0123456789abcdef", `state-${"x".repeat(300)}`,
        "state-%00", "state-\u0000", "state-é", "lockc-", "stver--v1", "state-foo-v0", "state-foo-v99999999999", ""
      ]
      const server = yield* fakeServer((req, res) => {
        if (req.path === "/v2/r/tags/list") {
          if (mode === "loop") return json(res, 200, { tags: ["state-default"] }, { link: `<${req.url}>; rel="next"` })
          if (mode === "garbage") return send(res, 200, bytesOf("{\"tags\": [1, {}, null]}"), { "content-type": "application/json" })
          if (mode === "huge") return json(res, 200, { tags: Array.from({ length: 50_000 }, (_, i) => `t${i}`) })
          return json(res, 200, { tags: odd })
        }
        return ociError(res, 404, "MANIFEST_UNKNOWN", "unknown")
      })
      const workspaces = Effect.flatMap(StateBackend.StateBackend, (b) => b.workspaces).pipe(Effect.provide(backendOn(server.host)))
      for (const m of ["loop", "garbage"] as const) {
        mode = m
        stats.targeted++
        stats.inputs++
        assertTagged(yield* Effect.exit(workspaces), ["RegistryError"])
        expect(Exit.isFailure(yield* Effect.exit(workspaces))).toBe(true)
      }
      mode = "huge"
      stats.targeted++
      stats.inputs++
      expect(yield* workspaces).toEqual(["default"])
      // Odd names: listing never offers a workspace that cannot be opened.
      mode = "odd"
      stats.targeted++
      stats.inputs += odd.length
      const names = yield* workspaces
      for (const name of names) expect(Exit.isSuccess(yield* Effect.exit(validateWorkspace(name)))).toBe(true)
      expect(names).toContain("default")
    }))

  it.scopedLive("odd references are refused before anything is sent (HttpRegistry, MemoryRegistry)", () =>
    Effect.gen(function*() {
      const server = yield* fakeServer((_, res) => ociError(res, 404, "NOT_FOUND", "unknown"))
      const odd = [
        "", ".", "..", "../x", "a/b", "a:b", "A".repeat(129), "-x", ".x", "x y", "%2e%2e", "tag\u0000", "sha256:abc",
        `sha256:${"G".repeat(64)}`, `sha512:${"a".repeat(128)}`, "tag?x=1", "tag#f", "é"
      ]
      const oddRepositories = [
        "", "R", "r//x", "/r", "r/", "r/../x", "r/A", "r x", "r:5000/x", "a".repeat(256), "r/-x", "r/x-", "r/.x", "é", "r\u0000"
      ]
      const http = HttpRegistry.layerNode({ registry: server.host, retry: { maxRetries: 0 } }).pipe(
        Layer.provide(Credentials.layerNone),
        Layer.provide(RateLimiter.layerUnlimited)
      )
      for (const layer of [http, MemoryRegistry.layer()]) {
        for (const reference of odd) {
          stats.targeted++
          stats.inputs++
          const results = yield* Effect.flatMap(Registry, (r) =>
            Effect.all([
              Effect.exit(r.getManifest("r", reference)),
              Effect.exit(r.resolveManifest("r", reference)),
              Effect.exit(r.deleteManifest("r", reference)),
              Effect.exit(r.putManifest("r", reference, { mediaType: MediaType.ociManifest, bytes: bytesOf("{}") })),
              Effect.exit(r.blobExists("r", reference as Digest.Digest))
            ])).pipe(Effect.provide(layer))
          for (const exit of results as ReadonlyArray<Exit.Exit<unknown, unknown>>) {
            expect({ reference, failed: Exit.isFailure(exit) }).toEqual({ reference, failed: true })
            assertTagged(exit, ["InvalidReference"])
          }
        }
        for (const repository of oddRepositories) {
          stats.targeted++
          stats.inputs++
          const results = yield* Effect.flatMap(Registry, (r) =>
            Effect.all([
              Effect.exit(r.getManifest(repository, "latest")),
              Effect.exit(r.putBlob(repository, { digest: Digest.emptyJsonDigest, size: 2 }, bytesOf("{}"))),
              Effect.exit(Stream.runDrain(r.listTags(repository)))
            ])).pipe(Effect.provide(layer))
          for (const exit of results as ReadonlyArray<Exit.Exit<unknown, unknown>>) {
            expect({ repository, failed: Exit.isFailure(exit) }).toEqual({ repository, failed: true })
            assertTagged(exit, ["InvalidReference"])
          }
        }
      }
      expect(server.requests).toEqual([])
    }))

  it.effect("invalid workspace names are InvalidReference", () =>
    Effect.gen(function*() {
      const backend = StateBackend.layer({ repository: "r" }).pipe(Layer.provide(MemoryRegistry.layer()))
      for (const name of ["", "a\u0000b", "tab\there", "new\nline", "\u007f", "x".repeat(1025), "é".repeat(513)]) {
        stats.targeted++
        stats.inputs++
        const exit = yield* Effect.exit(Effect.flatMap(StateBackend.StateBackend, (b) => b.stateManager(name)).pipe(Effect.provide(backend)))
        expect(Exit.isFailure(exit)).toBe(true)
        assertTagged(exit, ["InvalidReference"])
      }
    }))

  it.effect("bad configuration values are InvalidConfig naming the key", () =>
    Effect.gen(function*() {
      const bad: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
        ["repository", { repository: "ghcr.io/Org/State" }],
        ["repository", { repository: "ghcr.io/org/state:latest" }],
        ["repository", { repository: "ghcr.io/org/state@sha256:abc" }],
        ["repository", { repository: "https://user:pw@ghcr.io/org/state" }],
        ["repository", { repository: "ghcr.io" }],
        ["repository", { repository: "" }],
        ["retry_max", { repository: "ghcr.io/o/s", retry_max: -1 }],
        ["retry_max", { repository: "ghcr.io/o/s", retry_max: 1.5 }],
        ["retry_wait_min", { repository: "ghcr.io/o/s", retry_wait_min: "1s" }],
        ["lock_ttl", { repository: "ghcr.io/o/s", lock_ttl: -5 }],
        ["compression", { repository: "ghcr.io/o/s", compression: "zstd" }],
        ["insecure", { repository: "ghcr.io/o/s", insecure: "yes" }],
        ["versioning.max_versions", { repository: "ghcr.io/o/s", versioning: { enabled: true, max_versions: -1 } }],
        ["max_state_size", { repository: "ghcr.io/o/s", max_state_size: 1e400 }],
        ["unknown_key", { repository: "ghcr.io/o/s", unknown_key: 1 }]
      ]
      for (const [key, input] of bad) {
        stats.targeted++
        stats.inputs++
        const error = yield* Effect.flip(BackendConfig.decode(input))
        expect({ key: error.key, tag: error._tag }).toEqual({ key, tag: "InvalidConfig" })
        expect(error.message).not.toContain("pw@")
      }
      const env = ConfigProvider.fromMap(new Map([["TF_BACKEND_ORAS_REPOSITORY", "ghcr.io/o/s"], ["TF_BACKEND_ORAS_RETRY_MAX", "1e999"]]))
      stats.targeted++
      stats.inputs++
      expect((yield* Effect.flip(Effect.withConfigProvider(BackendConfig.fromEnv(), env))).key).toBe("TF_BACKEND_ORAS_RETRY_MAX")
    }))

  it.scopedLive("garbage from credential helpers is a CredentialsError that quotes none of it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const secret = "Sup3r-secret-from-helper"
      const helpers: ReadonlyArray<readonly [string, string]> = [
        ["binary", `cat >/dev/null\nprintf '\\001\\002\\377${secret}\\000'`],
        ["array", `cat >/dev/null\nprintf '["${secret}"]'`],
        ["truncated", `cat >/dev/null\nprintf '{"Username":"u","Secret":"${secret}'`],
        ["nosecret", `cat >/dev/null\nprintf '{"Username":"u","Secret":42}'`],
        ["emptyuser", `cat >/dev/null\nprintf '{"Username":"","Secret":"${secret}"}'`],
        ["flood", `cat >/dev/null\nhead -c 200000 /dev/zero | tr '\\000' 'x'\nprintf '${secret}'`],
        ["hang", `cat >/dev/null\nprintf '{"Username":"u","Secret":"${secret}'\nsleep 30`],
        ["crash", `cat >/dev/null\necho "${secret}"\nkill -9 $$`],
        ["stderr", `cat >/dev/null\necho "fatal: ${secret}" >&2\nexit 3`]
      ]
      for (const [name, body] of helpers) dir.helper(name, body)
      for (const [name] of helpers) {
        stats.targeted++
        stats.inputs++
        const started = performance.now()
        const error = yield* Effect.flip(CredentialHelper.run(name, "registry.example", { path: dir.path, timeout: "1 second" }).pipe(
          Effect.provide(NodeCommandExecutor.layer.pipe(Layer.provide(NodeFileSystem.layer)))
        ))
        expect({ name, tag: error._tag }).toEqual({ name, tag: "CredentialsError" })
        for (const text of [error.message, String(error), JSON.stringify(error)]) expect(text).not.toContain(secret)
        expect(performance.now() - started).toBeLessThan(10_000)
      }
    }), 60_000)
})
