// Jest reads `testTimeout` only from the top-level configuration, not from a project entry. Unit
// tests need no servers, but CI shares two cores with Kafka, Postgres and other test workers: a
// CPU-bound property test that takes 1 s alone can take 10 s there. A timeout is a hang detector,
// not a speed check (benchmarks measure speed), so it is generous.
jest.setTimeout(60000);
