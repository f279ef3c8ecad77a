import type { Logger } from "pino";

/**
 * What has been opened, closed last-opened-first: whatever runs on a thing stops before the thing closes.
 * A close that fails is logged and the rest still run, so one stuck connection cannot keep others open.
 * Closing twice (a test's cleanup after the code under test closed) waits for the first close.
 */
export type CloseStack = {
  push(close: () => Promise<void>): void;
  closeAll(): Promise<void>;
};

export function createCloseStack(logger: Logger): CloseStack {
  const closers: Array<() => Promise<void>> = [];
  let closing: Promise<void> | undefined;
  const closeInReverse = async () => {
    for (const close of [...closers].reverse())
      await close().catch((error) => logger.warn({ err: error }, "close failed"));
  };
  return {
    push(close) {
      closers.push(close);
    },
    closeAll() {
      closing ??= closeInReverse();
      return closing;
    },
  };
}
