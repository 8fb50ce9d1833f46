import { execFileSync } from "node:child_process";
import path from "node:path";

/**
 * Brings the local stack up (or reuses it) and builds dist/ for the tests that spawn real
 * node processes. The integration tier never skips: a server that cannot be started fails
 * the whole run, loudly, with the stack script's message.
 */
export default function globalSetup(): void {
  const root = path.resolve(__dirname, "../..");
  try {
    execFileSync("bash", [path.join(root, "stack/stack.sh"), "up"], { stdio: "inherit", cwd: root });
  } catch (err) {
    throw new Error(
      `integration tests need Kafka, Postgres, Redis and NATS; \`npm run stack:up\` failed: ${(err as Error).message}`,
    );
  }
  execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit", cwd: root });
}
