/**
 * Synthetic Terraform state of an exact size: valid JSON shaped like a real `terraform.tfstate`
 * (resources with ids, ARNs, tags and attribute maps, random hex where real states have ids), so
 * that gzip sees realistic redundancy. Written straight into one buffer: the only large
 * allocation of a benchmark process is the state itself.
 */

const hexDigits = "0123456789abcdef"

/** A small deterministic PRNG (mulberry32). */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The `serial` field is fixed-width at this offset so that `setSerial` changes bytes in place. */
const header = (serial: number) =>
  `{"version":4,"terraform_version":"1.9.8","serial":${String(serial).padStart(10, " ")},` +
  `"lineage":"3f1c6d2e-8a4b-4f7e-9c1d-5b2a7e9f0c31","outputs":{"vpc_id":{"value":"vpc-0a1b2c3d","type":"string"}},` +
  `"resources":[`

export const serialOffset = header(0).indexOf("\"serial\":") + "\"serial\":".length

export const makeState = (size: number, seed = 1): Buffer => {
  const out = Buffer.allocUnsafe(size)
  const random = prng(seed)
  const hex = (n: number) => {
    let s = ""
    for (let i = 0; i < n; i++) s += hexDigits[Math.floor(random() * 16)]
    return s
  }
  // The first resource is written with the header, so that every later one starts with a comma.
  const head = `${header(1)}{"mode":"data","type":"terraform_remote_state","name":"network","instances":[]}`
  const tail = "]}\n"
  const types = ["aws_instance", "aws_security_group", "aws_iam_role", "aws_s3_bucket", "aws_route53_record"]
  const resource = (i: number) => {
    const type = types[i % types.length]!
    const id = hex(17)
    return `,{"mode":"managed","type":"${type}","name":"r${i}",` +
      `"provider":"provider[\\"registry.terraform.io/hashicorp/aws\\"]","instances":[{"schema_version":1,` +
      `"attributes":{"id":"${type.slice(4, 7)}-${id}","arn":"arn:aws:ec2:eu-west-1:123456789012:${type}/${id}",` +
      `"ami":"ami-${hex(17)}","instance_type":"t3.medium","availability_zone":"eu-west-1${"abc"[i % 3]}",` +
      `"private_ip":"10.${i % 256}.${(i >> 8) % 256}.${(i * 7) % 256}","subnet_id":"subnet-${hex(17)}",` +
      `"tags":{"Name":"service-${i}","Environment":"production","Team":"platform","CostCenter":"cc-${i % 97}"},` +
      `"vpc_security_group_ids":["sg-${hex(17)}","sg-${hex(17)}"],"root_block_device":[{"volume_size":${8 + (i % 120)},` +
      `"volume_type":"gp3","encrypted":true,"kms_key_id":"arn:aws:kms:eu-west-1:123456789012:key/${hex(8)}-${hex(4)}-${hex(4)}-${hex(12)}"}]},` +
      `"sensitive_attributes":[],"private":"${Buffer.from(hex(48)).toString("base64")}"}]}`
  }
  let offset = out.write(head, 0, "latin1")
  const end = size - tail.length
  // Up to 1 MiB of distinct resources; larger states repeat that block (deflate's 32 KiB window
  // does not see repeats that far apart, so gzip ratios stay those of real states) — which keeps
  // the garbage of generating a 256 MiB state at ~1 MiB.
  const blockStart = offset
  for (let i = 0; offset - blockStart < MiB; i++) {
    const next = resource(i)
    if (offset + next.length > end) break
    offset += out.write(next, offset, "latin1")
  }
  const block = offset - blockStart
  while (block > 0 && offset + block <= end) {
    out.copyWithin(offset, blockStart, blockStart + block)
    offset += block
  }
  // Pad with whitespace (still valid JSON) to the exact size.
  out.fill(0x20, offset, end)
  out.write(tail, end, "latin1")
  return out
}

/** Give the state another serial in place (another digest, same size). */
export const setSerial = (state: Buffer, serial: number): void => {
  state.write(String(serial).padStart(10, " "), serialOffset, "latin1")
}

export const MiB = 1024 * 1024

/** Where the get-loop section stores its states (ours: a workspace; the others: tags). */
export const gcLoopWorkspace = "gcloop"
export const gcLoopRawTag = "raw-gcloop"
export const gcLoopPlatformTag = "platform-gcloop"
