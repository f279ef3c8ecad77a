import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    // Two cores on CI machines: more workers only add contention for NATS and Postgres.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 20_000,
    hookTimeout: 30_000,
    setupFiles: ["test/support/setup.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"],
  },
});
