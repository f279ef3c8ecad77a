import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints one plain closing line, `vitest: N passed, N failed, N skipped`, that CI tooling can read. A test
 * file that fails outside its tests (it does not compile, a `beforeAll` throws) counts as one failure, as
 * does an unhandled error: a run with either is not green even when every test that ran passed.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      let failedInModule = 0;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failedInModule++;
        else skipped++;
      }
      if (failedInModule === 0 && module.state() === "failed") failedInModule = 1;
      failed += failedInModule;
    }
    failed += unhandledErrors.length;
    // Written at exit so it is the very last line, after the default reporter's summary.
    process.once("exit", () => {
      process.stdout.write(`\nvitest: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    });
  }
}
