import type { JsMsg } from "@nats-io/jetstream";

/**
 * Whether a delivered message's raw header block contains a header name, without decoding the headers.
 *
 * The client decodes all of a message's headers on first access to `headers` (a string, a split, a Map,
 * arrays and a canonicalised key per line): while a rebuild read the log, that was a fifth of everything
 * it allocated, only to learn that most events carry no traceparent. This looks at the client's private
 * fields (`msg._msg.hdr`, the header length, and `msg._rdata`, header and payload bytes) of the pinned
 * @nats-io/nats-core version; where they are not there it answers undefined and the caller decodes as
 * before. A test checks the fields are found, so an upgrade that moves them is noticed.
 */
export function headerBlockMentions(m: JsMsg, name: Uint8Array): boolean | undefined {
  const inner = (m as { msg?: { _msg?: { hdr?: unknown }; _rdata?: unknown } }).msg;
  const length = inner?._msg?.hdr;
  const bytes = inner?._rdata;
  if (typeof length !== "number" || !(bytes instanceof Uint8Array) || length > bytes.length) return undefined;
  if (length <= 0) return false;
  const first = name[0];
  const last = length - name.length;
  outer: for (let i = 0; i <= last; i++) {
    if (bytes[i] !== first) continue;
    for (let j = 1; j < name.length; j++) if (bytes[i + j] !== name[j]) continue outer;
    return true;
  }
  return false;
}
