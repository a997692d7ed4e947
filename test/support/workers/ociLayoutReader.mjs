// A reader of an OCI image layout in its own OS process, using nothing but node:fs — what any
// other tool (skopeo, a backup script) would do — while other processes write through
// OciLayoutRegistry. It must never see a torn index.json, a tag naming a manifest or blob that is
// missing, or content whose sha256 or size differs from its descriptor.
//
// usage: node ociLayoutReader.mjs <layoutDir> <stopFile> <tag>...
// Reads until <stopFile> exists (or 60 s passed), then prints one JSON line of counts.
import { createHash } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"

const [layout, stopFile, ...tags] = process.argv.slice(2)
const refName = "org.opencontainers.image.ref.name"
const counts = {
  reads: 0, // index.json descriptor → manifest → config and layers, all verified
  bytes: 0,
  absent: 0, // the tag did not exist (yet) in the index read
  staleSnapshots: 0, // a file was gone, and a fresh index.json no longer lists its manifest (deleted meanwhile): fine
  torn: 0, // index.json or a file that did not parse / verify
  missing: 0, // a file of a manifest the current index.json lists was absent
  mismatched: 0, // sha256 or size differs from the descriptor
  errors: []
}

const sha256 = (bytes) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`
const blobPath = (digest) => join(layout, "blobs", "sha256", digest.slice("sha256:".length))
const fail = (kind, message) => {
  counts[kind]++
  if (counts.errors.length < 20) counts.errors.push(`${kind}: ${message}`)
}

const readIndex = () => {
  let text
  try {
    text = readFileSync(join(layout, "index.json"), "utf8")
  } catch (error) {
    if (error.code === "ENOENT") return undefined // not created yet
    throw error
  }
  try {
    const index = JSON.parse(text)
    if (index.schemaVersion !== 2 || !Array.isArray(index.manifests)) throw new Error("not an image index")
    return index
  } catch (error) {
    fail("torn", `index.json (${text.length} bytes): ${error.message}`)
    return undefined
  }
}

const lookup = (index, tag) => index?.manifests.find((d) => d.annotations?.[refName] === tag)

/** Read a content-addressed file; `undefined` when it is gone. */
const readVerified = (descriptor, what) => {
  let bytes
  try {
    bytes = readFileSync(blobPath(descriptor.digest))
  } catch (error) {
    if (error.code === "ENOENT") return undefined
    throw error
  }
  if (bytes.byteLength !== descriptor.size || sha256(bytes) !== descriptor.digest) {
    fail("mismatched", `${what} ${descriptor.digest}: ${bytes.byteLength} bytes hashing to ${sha256(bytes)}`)
    return null
  }
  counts.bytes += bytes.byteLength
  return bytes
}

// A file is gone: fine if a fresh index.json no longer lists the manifest (it was deleted since the
// index.json we followed was read); a missing file if it is still listed.
const gone = (digest, what) => {
  const current = readIndex()
  if (current?.manifests.some((d) => d.digest === digest)) fail("missing", `${what} of listed manifest ${digest}`)
  else counts.staleSnapshots++
}

/** Follow one descriptor of index.json: the manifest, then its config and layers, all verified. */
const follow = (descriptor) => {
  const manifestBytes = readVerified(descriptor, "manifest")
  if (manifestBytes === null) return
  if (manifestBytes === undefined) return gone(descriptor.digest, "manifest file")
  let manifest
  try {
    manifest = JSON.parse(manifestBytes.toString("utf8"))
  } catch (error) {
    return fail("torn", `manifest ${descriptor.digest}: ${error.message}`)
  }
  for (const blob of [manifest.config, ...manifest.layers]) {
    const bytes = readVerified(blob, "blob")
    if (bytes === null) return
    if (bytes === undefined) return gone(descriptor.digest, `blob ${blob.digest}`)
    if (blob.mediaType.endsWith("+json") || blob.mediaType.endsWith(".json")) {
      try {
        JSON.parse(bytes.toString("utf8"))
      } catch (error) {
        return fail("torn", `blob ${blob.digest}: ${error.message}`)
      }
    }
  }
  counts.reads++
}

// Each round: every tag asked for, and one untagged manifest of the index (one about to be
// pruned: the reads most likely to race with a delete).
let pick = 0
const readRound = () => {
  const index = readIndex()
  if (index === undefined) return
  for (const tag of tags) {
    const descriptor = lookup(index, tag)
    if (descriptor === undefined) counts.absent++
    else follow(descriptor)
  }
  const untagged = index.manifests.filter((d) => d.annotations?.[refName] === undefined)
  const pool = untagged.length > 0 ? untagged : index.manifests
  if (pool.length > 0) follow(pool[pick++ % pool.length])
}

// A short pause between rounds leaves CPU to the writers (the test machine may have 2 cores).
const pause = new Int32Array(new SharedArrayBuffer(4))
const deadline = Date.now() + 60_000
let round = 0
while (Date.now() < deadline) {
  // Check the stop file only every few rounds: it is a syscall too.
  if (round++ % 8 === 0 && existsSync(stopFile)) break
  readRound()
  Atomics.wait(pause, 0, 0, 1)
}
process.stdout.write(`${JSON.stringify(counts)}\n`)
