// Jest reads `testTimeout` only from the top-level configuration, not from a project entry;
// the integration tier talks to real servers and processes, so its tests get two minutes.
jest.setTimeout(120000);
