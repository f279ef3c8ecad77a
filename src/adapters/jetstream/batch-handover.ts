/**
 * Hands a follower's events to its handler in batches, one batch at a time, like a group commit: while
 * the handler applies a batch (a Postgres transaction, a KV write) the reader keeps receiving, and the
 * next batch is everything that arrived meanwhile. A follower that awaited its handler between messages
 * handed over one event per batch under sustained load — every live message says the server has nothing
 * more, however many already sit in the client's buffer — so projections fell far behind.
 *
 * A batch is handed over when it is full, or on the next turn of the event loop after the reader saw the
 * server's backlog drained (`flushSoon`), so everything the client already buffered joins it. The reader
 * waits (backpressure) once a full batch is waiting behind the one being applied, which also keeps the
 * client from pulling more from the server.
 */
export type BatchHandover<T> = {
  /** Adds an item. Returns a promise only when the reader must wait for room. */
  push(item: T): Promise<void> | undefined;
  /** The reader saw the server's backlog drained: hand over what is buffered on the next turn. */
  flushSoon(): void;
  /** Items received and not yet handed over. */
  readonly buffered: number;
  /** No more batches; resolves once the batch being applied (if any) has settled. */
  close(): Promise<void>;
};

export function createBatchHandover<T>(
  batchSize: number,
  handler: (batch: T[]) => Promise<void>,
  onFailure: (error: unknown) => void,
): BatchHandover<T> {
  let buffer: T[] = [];
  let applying: Promise<void> | undefined;
  let flushRequested = false;
  let scheduled = false;
  let closed = false;
  let room: { promise: Promise<void>; release: () => void } | undefined;

  const releaseRoom = () => {
    const waiting = room;
    room = undefined;
    waiting?.release();
  };

  const handOver = () => {
    if (closed || applying !== undefined || buffer.length === 0) return;
    const batch = buffer.length <= batchSize ? buffer : buffer.slice(0, batchSize);
    buffer = buffer.length <= batchSize ? [] : buffer.slice(batchSize);
    // What is left was also there when the flush was asked for: it goes on the next turn.
    if (buffer.length === 0) flushRequested = false;
    applying = handler(batch).then(
      () => {
        applying = undefined;
        releaseRoom();
        if (buffer.length >= batchSize) handOver();
        else if (flushRequested) schedule();
      },
      (error: unknown) => {
        applying = undefined;
        closed = true;
        buffer = [];
        releaseRoom();
        onFailure(error);
      },
    );
  };

  const onTurn = () => {
    scheduled = false;
    if (flushRequested) handOver();
  };
  const schedule = () => {
    if (scheduled || closed) return;
    scheduled = true;
    setImmediate(onTurn);
  };

  return {
    push(item) {
      buffer.push(item);
      if (buffer.length < batchSize) return undefined;
      if (applying === undefined) {
        handOver();
        return undefined;
      }
      if (room === undefined) {
        let release!: () => void;
        const promise = new Promise<void>((resolve) => {
          release = resolve;
        });
        room = { promise, release };
      }
      return room.promise;
    },
    flushSoon() {
      if (buffer.length === 0) return;
      flushRequested = true;
      if (applying === undefined) schedule();
    },
    get buffered() {
      return buffer.length;
    },
    close() {
      closed = true;
      buffer = [];
      releaseRoom();
      return applying?.catch(() => {}) ?? Promise.resolve();
    },
  };
}
