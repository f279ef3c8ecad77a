/**
 * Ports of the IdP integration (webhooks, back-channel logout, IdP-JWT sessions). Adapters: a NATS KV
 * bucket `<prefix>_replay` or an in-memory map (replay store), and a Postgres table (IdP session index).
 */

/**
 * Short-lived facts shared by every instance: "this webhook id / logout-token jti was already seen" and
 * "this IdP login is bound to that Tessera session". Entries carry their own expiry, checked on read,
 * because NATS 2.9 expires nothing per key.
 */
export interface ReplayStore {
  /**
   * Records `value` under `key` until `expiresAt` (epoch ms) unless a live entry exists. `won` says whether
   * this call recorded it; `value` is what the key holds afterwards. Atomic across instances.
   */
  claim(key: string, value: string, expiresAt: number): Promise<{ won: boolean; value: string }>;
  /** The live value of `key`, or undefined when absent or expired. */
  get(key: string): Promise<string | undefined>;
  /** Replaces `expected` with `next` atomically; false when the key no longer holds `expected`. */
  replace(key: string, expected: string, next: string, expiresAt: number): Promise<boolean>;
  /** Forgets `key` (best effort), e.g. when the work a claim guarded failed and may be retried. */
  release(key: string): Promise<void>;
}

/** Which Tessera sessions were created under an IdP session (OIDC `sid`), for back-channel logout. */
export interface IdpSessionIndex {
  sessionIdsForIdpSession(idpSessionId: string): Promise<Array<{ sessionId: string; userId: string }>>;
  /** The log position the index has applied up to. */
  checkpoint(): Promise<number>;
}
