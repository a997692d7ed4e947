/**
 * `oras-state doctor`: probe what the registry behind the target can do, at the `Registry` level,
 * and print a capability table.
 *
 * The probes write two small artifacts at tags `oras-state-doctor-<random>-a` and `-b` in the
 * target repository (the repository oras-state would use, so the permissions probed are the ones
 * that matter; the random tag namespace never touches state, lock or version tags), then:
 * - **auth**: the scheme seen on the wire (anonymous, basic, bearer; from the challenges and the
 *   `Authorization` scheme the client sent; never the credential itself);
 * - **push/pull**: blobs and a manifest written, read back and verified;
 * - **tag listing read-after-write**: a tag written is listed by the very next listing (if not,
 *   how long it took, up to 5 s): the lock protocol's safety depends on it;
 * - **pagination**: a listing with `n=1` answers one tag and a `Link` to the next page;
 * - **DELETE by tag** and **DELETE by digest** (405 means unsupported: locks are then released by
 *   re-tagging, and retention needs the GitHub Packages fallback);
 * - **cleanup**: every manifest it wrote is deleted where the registry allows it; blobs are left to
 *   the registry's garbage collection (the Distribution API cannot delete them safely).
 *
 * Exit code: 0 when push and pull work (missing capabilities are reported, not failures);
 * otherwise the code of the failure (5 unreachable, 6 unauthorized, …).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Digest from "../Digest.js"
import { MediaType, Registry, type Service as RegistryService } from "../Registry.js"
import { globalOptions, registryLayer, runCommand, type Target } from "./context.js"
import { exitCodeOf, ExitCode, messageOf, tagOf } from "./errors.js"
import { table } from "./format.js"

/**
 * One line of the capability table. `ok`: true (works), false (missing or failed), null (not
 * applicable or not tested).
 *
 * @since 0.1.0
 * @category models
 */
export interface Check {
  readonly id: string
  readonly label: string
  readonly result: string
  readonly ok: boolean | null
  readonly detail: string
}

interface Observation {
  readonly method: string
  readonly url: URL
  readonly status: number
  /** Scheme of the `Authorization` header sent, lowercased, or "none". */
  readonly sent: string
  /** Scheme of a `WWW-Authenticate` challenge received. */
  readonly challenge: string | undefined
  readonly link: boolean
}

const schemeOf = (header: string | undefined): string | undefined => {
  const scheme = header?.trim().split(/\s+/)[0]
  return scheme === undefined || scheme === "" ? undefined : scheme.toLowerCase()
}

const observe = (log: Array<Observation>) => (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.tap(client, (response) =>
    Effect.sync(() => {
      log.push({
        method: response.request.method,
        url: new URL(response.request.url),
        status: response.status,
        sent: schemeOf(response.request.headers["authorization"]) ?? "none",
        challenge: schemeOf(response.headers["www-authenticate"]),
        link: response.headers["link"] !== undefined
      })
    }))

const encoder = new TextEncoder()

const failed = (error: unknown) => `${tagOf(error)}: ${messageOf(error)}`

const authCheck = (log: ReadonlyArray<Observation>, location: string): Check => {
  const origin = new URL(location).origin
  const registry = log.filter((o) => o.url.origin === origin)
  const tokens = log.filter((o) => o.url.origin !== origin)
  const challenges = [...new Set(registry.flatMap((o) => (o.status === 401 && o.challenge !== undefined ? [o.challenge] : [])))]
  const sent = new Set(registry.map((o) => o.sent))
  const challenged = challenges.length === 0 ? "no challenge" : `challenge: ${challenges.join(", ")}`
  const label = "auth"
  if (sent.has("bearer")) {
    const realm = tokens[0]?.url.host
    const withCredentials = tokens.some((o) => o.sent !== "none")
    return {
      id: "auth",
      label,
      result: "bearer",
      ok: true,
      detail: `${challenged}; token${realm === undefined ? "" : ` from ${realm}`} ${withCredentials ? "with credentials" : "anonymous"}`
    }
  }
  if (sent.has("basic")) return { id: "auth", label, result: "basic", ok: true, detail: challenged }
  const refused = registry.some((o) => o.status === 401 || o.status === 403)
  return {
    id: "auth",
    label,
    result: "anonymous",
    ok: !refused,
    detail: refused ? `${challenged}; no credentials found for this registry` : challenged
  }
}

/**
 * Run the probes against the `Registry` in context.
 *
 * @since 0.1.0
 * @category probes
 */
export const probe = (target: Target, log: ReadonlyArray<Observation>) =>
  Effect.gen(function*() {
    const registry = yield* Registry
    const repo = target.repository
    const http = target._tag === "Registry"
    const namespace = `oras-state-doctor-${Crypto.randomBytes(6).toString("hex")}`
    const tags = { a: `${namespace}-a`, b: `${namespace}-b` }
    const checks: Array<Check> = []
    const notes: Array<string> = []
    const written = new Map<string, Digest.Digest>()

    const pushArtifact = (tag: string, content: string) =>
      Effect.gen(function*() {
        const data = encoder.encode(content)
        const layer = { digest: Digest.sha256(data), size: data.byteLength }
        const config = yield* registry.blobExists(repo, Digest.emptyJsonDigest)
        if (Option.isNone(config)) yield* registry.putBlob(repo, { digest: Digest.emptyJsonDigest, size: 2 }, encoder.encode("{}"))
        yield* registry.putBlob(repo, layer, data)
        const bytes = encoder.encode(JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.ociManifest,
          artifactType: "application/vnd.oras-state.doctor.v1",
          config: { mediaType: MediaType.ociEmpty, digest: Digest.emptyJsonDigest, size: 2 },
          layers: [{ mediaType: "application/vnd.oras-state.doctor.probe.v1", digest: layer.digest, size: layer.size }],
          annotations: { "org.opencontainers.image.title": tag }
        }))
        const digest = yield* registry.putManifest(repo, tag, { mediaType: MediaType.ociManifest, bytes })
        written.set(tag, digest)
        return { digest, layer, data }
      })

    // push/pull
    const roundTrip = yield* Effect.either(Effect.gen(function*() {
      const pushed = yield* pushArtifact(tags.a, `oras-state doctor probe ${namespace} a`)
      const manifest = yield* registry.getManifest(repo, tags.a)
      if (Option.isNone(manifest) || manifest.value.digest !== pushed.digest) {
        return yield* Effect.fail(new Error("the manifest just written cannot be read back by tag"))
      }
      const blob = yield* Stream.runCollect(registry.getBlob(repo, pushed.layer))
      const back = Buffer.concat(Chunk.toArray(blob))
      if (!back.equals(pushed.data)) return yield* Effect.fail(new Error("the blob read back differs"))
      return pushed
    }))
    if (Either.isLeft(roundTrip)) {
      checks.push({ id: "push-pull", label: "push/pull", result: "failed", ok: false, detail: failed(roundTrip.left) })
      if (http) checks.unshift(authCheck(log, registry.location))
      yield* cleanup(registry, repo, written, checks, false)
      return { namespace, checks, notes, exitCode: exitCodeOf(roundTrip.left), error: roundTrip.left as unknown }
    }
    checks.push({ id: "push-pull", label: "push/pull", result: "ok", ok: true, detail: "blob + manifest written, read back, verified" })

    // read-after-write of the tag listing
    const consistency = yield* Effect.either(Effect.gen(function*() {
      yield* pushArtifact(tags.b, `oras-state doctor probe ${namespace} b`)
      const start = yield* Clock.currentTimeMillis
      let attempts = 0
      while (true) {
        attempts++
        const listed = yield* Stream.runCollect(registry.listTags(repo))
        if (Chunk.some(listed, (t) => t === tags.b)) return { attempts, millis: (yield* Clock.currentTimeMillis) - start }
        if ((yield* Clock.currentTimeMillis) - start > 5000) return undefined
        yield* Effect.sleep("250 millis")
      }
    }))
    if (Either.isLeft(consistency)) {
      checks.push({ id: "tag-list-consistency", label: "tag listing read-after-write", result: "failed", ok: false, detail: failed(consistency.left) })
    } else if (consistency.right === undefined) {
      checks.push({ id: "tag-list-consistency", label: "tag listing read-after-write", result: "inconsistent", ok: false, detail: "a new tag was not listed within 5 s" })
      notes.push("tag listing is not read-after-write consistent: concurrent lock acquisition is not safe on this registry")
    } else if (consistency.right.attempts === 1) {
      checks.push({ id: "tag-list-consistency", label: "tag listing read-after-write", result: "consistent", ok: true, detail: "a new tag is listed immediately" })
    } else {
      checks.push({
        id: "tag-list-consistency",
        label: "tag listing read-after-write",
        result: "eventual",
        ok: false,
        detail: `a new tag was listed after ~${consistency.right.millis} ms`
      })
      notes.push("tag listing is only eventually consistent: concurrent lock acquisition is not safe on this registry")
    }

    // pagination
    if (!http) {
      checks.push({ id: "pagination", label: "tag pagination (n=1)", result: "n/a", ok: null, detail: "local store: no paginated listing" })
    } else {
      const before = log.length
      const pages = yield* Effect.either(
        registry.listTags(repo, { pageSize: 1 }).pipe(Stream.chunks, Stream.take(1), Stream.runCollect)
      )
      const firstPage = log.slice(before).find((o) => o.url.pathname.endsWith("/tags/list") && o.url.searchParams.get("n") === "1")
      if (Either.isLeft(pages)) {
        checks.push({ id: "pagination", label: "tag pagination (n=1)", result: "failed", ok: false, detail: failed(pages.left) })
      } else {
        const first = Chunk.head(pages.right).pipe(Option.map(Chunk.size), Option.getOrElse(() => 0))
        const link = firstPage?.link === true
        checks.push(
          first === 1 && link
            ? { id: "pagination", label: "tag pagination (n=1)", result: "honoured", ok: true, detail: "1 tag and a Link to the next page" }
            : first > 1
            ? { id: "pagination", label: "tag pagination (n=1)", result: "ignored", ok: false, detail: `n=1 answered ${first} tags${link ? " and a Link" : ", no Link"} (handled: listings are read whole)` }
            : { id: "pagination", label: "tag pagination (n=1)", result: "broken", ok: false, detail: `n=1 answered ${first} tag(s) without a Link` }
        )
      }
    }

    // DELETE by tag (on b)
    let tagDelete = false
    if (written.has(tags.b)) {
      const deleted = yield* Effect.either(registry.deleteManifest(repo, tags.b))
      if (Either.isRight(deleted)) {
        const gone = yield* Effect.either(registry.resolveManifest(repo, tags.b))
        tagDelete = Either.isRight(gone) && Option.isNone(gone.right)
        checks.push(tagDelete
          ? { id: "delete-tag", label: "manifest DELETE by tag", result: "supported", ok: true, detail: "the tag is gone" }
          : { id: "delete-tag", label: "manifest DELETE by tag", result: "ineffective", ok: false, detail: "DELETE answered success but the tag still resolves" })
      } else if (deleted.left._tag === "Unsupported") {
        checks.push({ id: "delete-tag", label: "manifest DELETE by tag", result: "unsupported", ok: false, detail: `${statusText(deleted.left)}(oras-state deletes by digest)` })
      } else {
        checks.push({ id: "delete-tag", label: "manifest DELETE by tag", result: "failed", ok: false, detail: failed(deleted.left) })
      }
    } else {
      checks.push({ id: "delete-tag", label: "manifest DELETE by tag", result: "not tested", ok: null, detail: "the probe tag could not be written" })
    }

    // DELETE by digest (on a)
    const digestA = written.get(tags.a)!
    const deletedA = yield* Effect.either(registry.deleteManifest(repo, digestA))
    let digestDelete = false
    if (Either.isRight(deletedA)) {
      const gone = yield* Effect.either(registry.resolveManifest(repo, tags.a))
      digestDelete = Either.isRight(gone) && Option.isNone(gone.right)
      checks.push(digestDelete
        ? { id: "delete-digest", label: "manifest DELETE by digest", result: "supported", ok: true, detail: "the manifest and its tag are gone" }
        : { id: "delete-digest", label: "manifest DELETE by digest", result: "ineffective", ok: false, detail: "DELETE answered success but the tag still resolves" })
      if (digestDelete) written.delete(tags.a)
    } else if (deletedA.left._tag === "Unsupported") {
      checks.push({ id: "delete-digest", label: "manifest DELETE by digest", result: "unsupported", ok: false, detail: statusText(deletedA.left).trim() })
      notes.push("no manifest DELETE: locks are released by re-tagging to unlocked- markers; version retention needs a delete fallback (GitHub Packages API)")
    } else {
      checks.push({ id: "delete-digest", label: "manifest DELETE by digest", result: "failed", ok: false, detail: failed(deletedA.left) })
    }

    if (http) checks.unshift(authCheck(log, registry.location))
    yield* cleanup(registry, repo, written, checks, digestDelete)
    return { namespace, checks, notes, exitCode: ExitCode.ok as number, error: undefined as unknown }
  })

const statusText = (e: { readonly status?: number | undefined; readonly code?: string | undefined }) =>
  e.status === undefined && e.code === undefined
    ? ""
    : `${[e.status === undefined ? undefined : `HTTP ${e.status}`, e.code].filter(Boolean).join(" ")} `

// Delete what the probes left, by digest (one digest may carry a tag still).
const cleanup = (
  registry: RegistryService,
  repo: string,
  written: Map<string, Digest.Digest>,
  checks: Array<Check>,
  digestDelete: boolean
) =>
  Effect.gen(function*() {
    const left: Array<string> = []
    let removed = 0
    for (const [tag, digest] of written) {
      const still = yield* Effect.either(registry.resolveManifest(repo, digest))
      if (Either.isRight(still) && Option.isNone(still.right)) continue
      const deleted = yield* Effect.either(registry.deleteManifest(repo, digest))
      if (Either.isRight(deleted)) removed++
      else left.push(tag)
    }
    checks.push(
      left.length === 0
        ? {
          id: "cleanup",
          label: "cleanup",
          result: "done",
          ok: true,
          detail: `${removed + (digestDelete ? 1 : 0)} probe manifest(s) deleted; blobs left to garbage collection`
        }
        : {
          id: "cleanup",
          label: "cleanup",
          result: "incomplete",
          ok: false,
          detail: `left behind (delete them with the registry's own tools): ${left.join(", ")}`
        }
    )
  })

const humanReport = (target: Target, location: string, namespace: string, checks: ReadonlyArray<Check>, notes: ReadonlyArray<string>) =>
  [
    `registry:   ${location}`,
    `repository: ${target.repository}`,
    `probe tags: ${namespace}-*`,
    "",
    table(["CAPABILITY", "RESULT", "DETAIL"], checks.map((c) => [c.label, c.result, c.detail])),
    ...(notes.length === 0 ? [] : ["", ...notes.map((n) => `note: ${n}`)])
  ].join("\n")

/**
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("doctor", { ...globalOptions }, (input) =>
  runCommand(input, (cli) =>
    Effect.gen(function*() {
      const target = yield* cli.target
      const log: Array<Observation> = []
      const http = target._tag === "Registry"
      const report = yield* Effect.gen(function*() {
        const registry = yield* Registry
        const result = yield* probe(target, log)
        return { ...result, location: http ? registry.location : target.display }
      }).pipe(Effect.provide(registryLayer(target, http ? observe(log) : undefined)))
      const { checks, error, exitCode, location, namespace, notes } = report
      return {
        json: {
          store: target.display,
          registry: location,
          repository: target.repository,
          namespace,
          checks,
          notes
        },
        human: humanReport(target, location, namespace, checks, notes),
        exitCode,
        error
      }
    }))).pipe(
    Command.withDescription(
      "Probe the registry: auth mode, push/pull, tag-listing consistency, pagination, DELETE by tag and by digest"
    )
  )
