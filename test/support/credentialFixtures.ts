/**
 * Test fixtures for credential sources: temporary HOME directories with real config files, and
 * real `docker-credential-*` helper programs (small POSIX shell scripts) in a temporary directory
 * that the tests put first on the helper `PATH`.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

export interface TempDir {
  readonly dir: string
  /** Write `content` (JSON-encoded unless a string) to `dir/relative`, creating directories. */
  readonly write: (relative: string, content: unknown) => string
  /** Install `docker-credential-<name>` with the given shell body into `dir/bin`. */
  readonly helper: (name: string, body: string) => void
  /** `dir/bin` prepended to this process's PATH. */
  readonly path: string
  /** Lines appended to `dir/calls-<name>` by helpers built with `recordCall`. */
  readonly calls: (name: string) => ReadonlyArray<string>
}

/** A temporary directory, removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "oras-state-creds-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir): TempDir => {
  const bin = Path.join(dir, "bin")
  Fs.mkdirSync(bin)
  return {
    dir,
    write: (relative, content) => {
      const file = Path.join(dir, relative)
      Fs.mkdirSync(Path.dirname(file), { recursive: true })
      Fs.writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content, null, 2))
      return file
    },
    helper: (name, body) => {
      const file = Path.join(bin, `docker-credential-${name}`)
      Fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
    },
    path: `${bin}${Path.delimiter}${process.env["PATH"] ?? ""}`,
    calls: (name) => {
      const file = Path.join(dir, `calls-${name}`)
      return Fs.existsSync(file) ? Fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0) : []
    }
  }
}))

/** Shell: read the server URL from stdin into `$url` and append it to `calls-<name>`. */
export const recordCall = (dir: TempDir, name: string): string =>
  `[ "$1" = "get" ] || exit 3\nurl=$(cat)\necho "$url" >> '${Path.join(dir.dir, `calls-${name}`)}'`

/** Shell: answer `{ServerURL, Username, Secret}` for `url` if listed, else "not found". */
export const answering = (answers: Readonly<Record<string, { readonly username: string; readonly secret: string }>>) =>
  [
    `case "$url" in`,
    ...Object.entries(answers).map(([url, a]) =>
      `  '${url}') printf '%s' '${JSON.stringify({ ServerURL: url, Username: a.username, Secret: a.secret })}' ;;`
    ),
    `  *) printf 'credentials not found in native keychain'; exit 1 ;;`,
    `esac`
  ].join("\n")

/** `base64(user:password)` as docker writes it. */
export const basicAuth = (username: string, password: string): string =>
  Buffer.from(`${username}:${password}`).toString("base64")

/** Throws if any rendering of `error` contains one of `secrets`. */
export const assertNoSecrets = (error: unknown, secrets: ReadonlyArray<string>): void => {
  const e = error as { readonly message?: unknown }
  const renderings = [String(error), JSON.stringify(error), typeof e.message === "string" ? e.message : ""]
  for (const secret of secrets) {
    for (const text of renderings) {
      if (text.includes(secret)) throw new Error(`secret ${JSON.stringify(secret.slice(0, 3))}… leaked in: ${text}`)
    }
  }
}
