// Keeps test output free of request logs; individual tests opt in when they assert on logs.
process.env.LOG_LEVEL ??= "silent";
