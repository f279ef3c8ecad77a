/**
 * Runs async work one at a time per key, in arrival order. Keys with nothing queued cost nothing: the
 * tail promise is dropped as soon as the last task for a key settles.
 */
export function createKeyedMutex() {
  const tails = new Map<string, Promise<unknown>>();

  return {
    run<T>(key: string, task: () => Promise<T>): Promise<T> {
      const previous = tails.get(key) ?? Promise.resolve();
      const result = previous.then(task, task);
      const tail = result.then(
        () => undefined,
        () => undefined,
      );
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
    get pending(): number {
      return tails.size;
    },
  };
}
