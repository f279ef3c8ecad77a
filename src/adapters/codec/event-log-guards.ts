import type { AppendOptions, FollowOptions } from "../../domain/ports.ts";

/** Argument checks shared by both event-log adapters, so they refuse the same calls the same way. */

export function assertAppendOptions(options: AppendOptions): void {
  if (!Number.isInteger(options.expectedVersion) || options.expectedVersion < 0) {
    throw new RangeError(`expectedVersion must be a non-negative integer, got ${options.expectedVersion}`);
  }
  if (typeof options.messageId !== "string" || options.messageId.length === 0) {
    throw new RangeError("messageId must be a non-empty string");
  }
}

export function assertFollowOptions(options: FollowOptions): void {
  if (!Number.isInteger(options.from) || options.from < 1) {
    throw new RangeError(`follow: from must be a position >= 1, got ${options.from}`);
  }
  if (!Number.isInteger(options.batchSize) || options.batchSize < 1) {
    throw new RangeError(`follow: batchSize must be a positive integer, got ${options.batchSize}`);
  }
}
