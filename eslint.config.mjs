import js from "@eslint/js";
import tseslint from "typescript-eslint";
import prettier from "eslint-config-prettier";

/** The longest a function may be, in lines. */
export const MAX_FUNCTION_LINES = 80;
/** Files with a function over MAX_FUNCTION_LINES, waiting to be split. This list may only shrink. */
export const LONG_FUNCTION_EXCEPTIONS = ["public/js/price-chart.js"];

const FOLDERS = [
  "domain",
  "lib",
  "adapters",
  "runtime",
  "services",
  "mixins",
  "app",
  "bin",
  "generator",
  "replay",
  "bench",
  "test",
];

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", ".stack/", "data/", "coverage/", ".scratch/", "public/vendor/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    languageOptions: { parserOptions: { projectService: false } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "off",
      eqeqeq: ["error", "smart"],
    },
  },
  {
    files: ["*.js", "*.cjs"],
    languageOptions: {
      sourceType: "commonjs",
      globals: { module: "writable", require: "readonly", __dirname: "readonly", process: "readonly" },
    },
  },
  {
    files: ["public/**/*.js"],
    languageOptions: {
      globals: {
        window: "readonly",
        document: "readonly",
        WebSocket: "readonly",
        fetch: "readonly",
        console: "readonly",
        URL: "readonly",
        setTimeout: "readonly",
        setInterval: "readonly",
        getComputedStyle: "readonly",
        location: "readonly",
      },
    },
  },
  {
    // A function fits on a screen, everywhere but the tests (a service schema counts by its
    // members). LONG_FUNCTION_EXCEPTIONS may only shrink: test/unit/lint/function-length.test.ts
    // fails when a file in it no longer needs to be there.
    files: ["**/*.ts", "**/*.js", "**/*.mjs"],
    ignores: ["test/**", ...LONG_FUNCTION_EXCEPTIONS],
    rules: { "max-lines-per-function": ["error", MAX_FUNCTION_LINES] },
  },
  // The layers, from the ground up: domain -> lib -> adapters -> runtime -> services -> app -> bin
  // (docs/architecture.md). Each folder may import only from the folders below it.
  {
    files: ["domain/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            ...ioLibraries("the pure core does no I/O"),
            ...outerFolders("domain", "the pure core imports only itself"),
          ],
        },
      ],
    },
  },
  {
    files: ["lib/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: outerFolders("lib", "lib/ is the ground floor", ["domain"]) },
      ],
    },
  },
  {
    files: ["adapters/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: outerFolders("adapters", "an adapter knows no engine or service", ["domain", "lib"]) },
      ],
    },
  },
  {
    files: ["runtime/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: outerFolders("runtime", "the engine knows no service", ["domain", "lib", "adapters"]),
        },
      ],
    },
  },
  {
    files: ["services/**/*.ts", "mixins/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            ...outerFolders("services", "services are wired by the composition root", [
              "domain",
              "lib",
              "adapters",
              "runtime",
              "mixins",
              "services",
            ]),
            {
              group: ["**/*.service", "**/*.service.ts", "./index", "../services"],
              message:
                "no service imports another service: talk through Moleculer actions and events, with payload types from services/contracts.ts",
            },
          ],
        },
      ],
    },
  },
  {
    // Clients of the HTTP API: they share the message schemas, never the server's insides.
    files: ["generator/**/*.ts", "replay/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: outerFolders("clients", "a client talks to the server over HTTP only", ["domain", "lib"]),
        },
      ],
    },
  },
  {
    files: ["bench/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        { patterns: [{ group: ["**/test", "**/test/**"], message: "benchmarks import no test code" }] },
      ],
    },
  },
);

/** Libraries that do I/O or belong to the framework. */
function ioLibraries(message) {
  return [
    {
      group: [
        "moleculer*",
        "kafkajs",
        "pg",
        "ioredis",
        "nats",
        "ws",
        "@electric-sql/*",
        "fs",
        "fs/*",
        "node:fs",
        "node:fs/*",
        "net",
        "node:net",
        "http",
        "https",
        "http2",
        "node:http",
        "node:https",
        "node:http2",
        "dgram",
        "node:dgram",
        "dns",
        "node:dns",
        "child_process",
        "node:child_process",
        "worker_threads",
        "node:worker_threads",
      ],
      message,
    },
  ];
}

/** Relative imports of every project folder except `allowed` (and the folder itself). */
function outerFolders(self, message, allowed = []) {
  const banned = FOLDERS.filter(f => f !== self && !allowed.includes(f));
  return [
    {
      group: banned.flatMap(f => [`**/${f}`, `**/${f}/**`]),
      message: `${message} (imports from ${banned.join(", ")} are not allowed here)`,
    },
  ];
}
