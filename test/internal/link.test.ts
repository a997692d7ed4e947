import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { nextLink } from "../../src/internal/http/link.js"

const base = new URL("http://127.0.0.1:5000/v2/tfstate/demo/tags/list?n=2")
const next = (header: string | undefined, from: URL = base) => nextLink(header, from)?.href

describe("nextLink", () => {
  it("distribution 2.8: a relative link resolves against the request URL", () => {
    expect(next("</v2/tfstate/demo/tags/list?last=a&n=2>; rel=\"next\"")).toBe(
      "http://127.0.0.1:5000/v2/tfstate/demo/tags/list?last=a&n=2"
    )
    expect(next("</v2/x/tags/list?last=a&n=2>; rel=\"next\"")).toBe("http://127.0.0.1:5000/v2/x/tags/list?last=a&n=2")
  })

  it("path-relative and absolute links", () => {
    expect(next("<list?last=b>; rel=\"next\"")).toBe("http://127.0.0.1:5000/v2/tfstate/demo/tags/list?last=b")
    expect(next("<https://ghcr.io/v2/acme/tfstate/tags/list?last=v9&n=100>; rel=\"next\"")).toBe(
      "https://ghcr.io/v2/acme/tfstate/tags/list?last=v9&n=100"
    )
  })

  it("rel=next unquoted, in any case, with odd spacing", () => {
    expect(next("</p?last=a>; rel=next")).toBe("http://127.0.0.1:5000/p?last=a")
    expect(next("</p?last=a>;rel=next")).toBe("http://127.0.0.1:5000/p?last=a")
    expect(next("  </p?last=a>  ;  REL = \"Next\"  ")).toBe("http://127.0.0.1:5000/p?last=a")
    expect(next("</p?last=a>; rel=\"next\"; title=\"more\"")).toBe("http://127.0.0.1:5000/p?last=a")
  })

  it("next among several relation types", () => {
    expect(next("</p?last=a>; rel=\"prefetch next\"")).toBe("http://127.0.0.1:5000/p?last=a")
    expect(next("</p?last=a>; rel=\"next  last\"")).toBe("http://127.0.0.1:5000/p?last=a")
  })

  it("several links, only one of them next", () => {
    expect(next("</first>; rel=\"first\", </prev>; rel=\"prev\", </p?last=b&n=2>; rel=\"next\", </last>; rel=\"last\""))
      .toBe("http://127.0.0.1:5000/p?last=b&n=2")
    expect(next("</p?last=b>; rel=\"next\",</last>; rel=\"last\"")).toBe("http://127.0.0.1:5000/p?last=b")
  })

  it("commas and semicolons inside the URL or quoted parameters are not separators", () => {
    expect(next("</p?last=a,b;c>; rel=\"next\"")).toBe("http://127.0.0.1:5000/p?last=a,b;c")
    expect(next("</a>; title=\"x, </b>; rel=next\", </c>; rel=next")).toBe("http://127.0.0.1:5000/c")
    // a rel=next inside another parameter's quoted value does not make the link a next link
    expect(next("</a>; title=\"a; rel=next\"")).toBeUndefined()
  })

  it("no next link", () => {
    expect(next(undefined)).toBeUndefined()
    expect(next("")).toBeUndefined()
    expect(next("</p>; rel=\"prev\"")).toBeUndefined()
    expect(next("</p>; rel=\"nextpage\"")).toBeUndefined()
    expect(next("</p>; rel=\"\"")).toBeUndefined()
    expect(next("</p>; relation=\"next\"")).toBeUndefined()
    expect(next("</p>")).toBeUndefined()
    expect(next("/p; rel=\"next\"")).toBeUndefined()
    expect(next("</p; rel=\"next\"")).toBeUndefined()
  })

  it("only http and https targets", () => {
    for (
      const target of [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "file:///etc/passwd",
        "data:text/plain,hi",
        "ftp://example.com/v2/",
        "ws://example.com/v2/",
        "mailto:a@b"
      ]
    ) {
      expect(next(`<${target}>; rel="next"`), target).toBeUndefined()
    }
    expect(next("<HTTPS://Example.com/v2/x/tags/list?last=a>; rel=next")).toBe(
      "https://example.com/v2/x/tags/list?last=a"
    )
  })

  it("an invalid URL yields undefined", () => {
    expect(next("<http://[::1/x>; rel=\"next\"")).toBeUndefined()
    expect(next("<http://exa mple.com/>; rel=\"next\"")).toBeUndefined()
  })
})

const headerish = FastCheck.array(
  FastCheck.oneof(
    FastCheck.constantFrom(
      "<",
      ">",
      ";",
      ",",
      "=",
      "\"",
      "\\",
      " ",
      "rel",
      "next",
      "rel=\"next\"",
      "; rel=next",
      "javascript:",
      "file:",
      "data:",
      "http:",
      "https://",
      "//",
      "/v2/x",
      "?last=",
      ":",
      "é",
      "\u0000"
    ),
    FastCheck.string({ maxLength: 8 })
  ),
  { maxLength: 30 }
).map((parts) => parts.join(""))

const bases = FastCheck.constantFrom(
  base,
  new URL("https://ghcr.io/v2/acme/tfstate/tags/list?n=100"),
  new URL("http://[::1]:5000/v2/a/tags/list")
)

describe("nextLink properties", () => {
  it.prop(
    "never throws, terminates, and returns only http(s) URLs or undefined",
    [FastCheck.oneof(FastCheck.string({ unit: "binary" }), headerish), bases],
    ([header, from]) => {
      const url = nextLink(header, from)
      return url === undefined || (url instanceof URL && (url.protocol === "http:" || url.protocol === "https:"))
    },
    { fastCheck: { numRuns: 3000 } }
  )

  it.prop(
    "a next link with any other scheme yields undefined",
    [
      FastCheck.stringMatching(/^[A-Za-z][A-Za-z0-9+.-]{0,10}$/).filter((s) => !/^https?$/i.test(s)),
      FastCheck.oneof(FastCheck.webPath(), FastCheck.string({ maxLength: 20 }).map((s) => s.replace(/>/g, ""))),
      bases
    ],
    ([scheme, rest, from]) => nextLink(`<${scheme}:${rest}>; rel="next"`, from) === undefined
  )

  it.prop(
    "finds the next link among others, wherever it is",
    [
      FastCheck.webPath(),
      FastCheck.array(FastCheck.constantFrom("prev", "first", "last", "self"), { maxLength: 3 }),
      FastCheck.nat({ max: 3 }),
      FastCheck.boolean()
    ],
    ([path, others, position, quoted]) => {
      const target = `/v2${path}?last=${encodeURIComponent(path)}&n=2`
      const links = others.map((rel) => `</${rel}>; rel="${rel}"`)
      links.splice(Math.min(position, links.length), 0, `<${target}>; rel=${quoted ? "\"next\"" : "next"}`)
      expect(nextLink(links.join(", "), base)?.href).toBe(new URL(target, base).href)
    }
  )

  it("is linear on long adversarial input", () => {
    for (
      const header of [
        "</p>; rel=" + " ".repeat(200_000) + "x",
        "</p>; rel=\"" + " next".repeat(50_000) + "x",
        "</p>" + "; rel=".repeat(50_000),
        ",".repeat(100_000) + " ".repeat(100_000),
        "<".repeat(200_000),
        "\"".repeat(200_000)
      ]
    ) {
      const start = performance.now()
      nextLink(header, base)
      expect(performance.now() - start).toBeLessThan(1000)
    }
  })
})
