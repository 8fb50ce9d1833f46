/** A Dockerfile as stages of instructions, and .dockerignore's matcher: enough to check ours. */

export interface Instruction {
  keyword: string;
  args: string;
  /** Flags such as --from=build of COPY, as name -> value. */
  flags: Record<string, string>;
  /** The exec-form (JSON array) arguments, when the instruction uses that form. */
  exec?: string[];
}

export interface Stage {
  /** The image as Docker pulls it: `from` with the build arguments of the global scope expanded. */
  image: string;
  /** The image as FROM writes it, such as `${NODE_IMAGE}`. */
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** `ARG NAME=value` (or `ARG NAME`) of the global scope, before the first FROM: name -> default. */
function globalArg(args: string, into: Map<string, string | undefined>): void {
  const m = /^([A-Za-z_]\w*)(?:=(.*))?$/.exec(args);
  if (!m) throw new Error(`cannot read ARG ${args}`);
  const value = m[2]?.trim().replace(/^(["'])(.*)\1$/, "$2");
  into.set(m[1], value);
}

/** Expands `$NAME` and `${NAME}` with the global build arguments; one without a value is an error. */
function expandArgs(text: string, args: Map<string, string | undefined>): string {
  return text.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    const value = args.get(name);
    if (value === undefined) throw new Error(`FROM uses $${name}, which no ARG before the first FROM sets`);
    return value;
  });
}

export function parseDockerfile(text: string): Stage[] {
  const lines = text
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map(l => l.trim())
    .filter(l => l && !l.startsWith("#"));
  const stages: Stage[] = [];
  const globalArgs = new Map<string, string | undefined>();
  for (const line of lines) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (!m) throw new Error(`cannot read Dockerfile line: ${line}`);
    const keyword = m[1].toUpperCase();
    let args = m[2].trim();
    const flags: Record<string, string> = {};
    for (let f = /^--([\w-]+)(?:=(\S+))?\s+/.exec(args); f; f = /^--([\w-]+)(?:=(\S+))?\s+/.exec(args)) {
      flags[f[1]] = f[2] ?? "true";
      args = args.slice(f[0].length);
    }
    if (keyword === "FROM") {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!from) throw new Error(`cannot read FROM ${args}`);
      stages.push({ image: expandArgs(from[1], globalArgs), from: from[1], name: from[2], instructions: [] });
      continue;
    }
    if (stages.length === 0) {
      if (keyword === "ARG") {
        globalArg(args, globalArgs);
        continue;
      }
      throw new Error(`${keyword} before the first FROM`);
    }
    const instruction: Instruction = { keyword, args, flags };
    const execText = keyword === "HEALTHCHECK" ? args.replace(/^CMD\s+/i, "") : args;
    if (execText.startsWith("[")) {
      try {
        instruction.exec = JSON.parse(execText) as string[];
      } catch {
        throw new Error(`${keyword} is not a valid JSON array: ${execText}`);
      }
    }
    stages[stages.length - 1].instructions.push(instruction);
  }
  return stages;
}

/** An image reference `repository[:tag][@digest]`, split (a registry host with a port stays in `repository`). */
export function parseImageReference(ref: string): { repository: string; tag?: string; digest?: string } {
  const [nameAndTag, digest] = ref.split("@", 2);
  const m = /^(.*?)(?::([^:/]+))?$/.exec(nameAndTag)!;
  return { repository: m[1], tag: m[2], digest };
}

/**
 * What is wrong with the base images of the stages, given the Node major package.json's engines
 * ask for: each stage must be `node:<major>-bookworm-slim` (or `node:<major>.<minor>.<patch>-bookworm-slim`)
 * pinned by a sha256 digest (a tag alone moves under us: `latest`, `lts` and even `24-bookworm-slim`
 * are republished with every release), and every stage must name it through one build ARG of the
 * global scope, so that no stage can drift from the others. Empty when all is well.
 */
export function baseImageProblems(stages: Stage[], nodeMajor: string): string[] {
  const problems: string[] = [];
  if (stages.length === 0) return ["no FROM"];
  for (const stage of stages) {
    const at = `stage ${stage.name ?? "(unnamed)"}: FROM ${stage.from} (${stage.image})`;
    const ref = parseImageReference(stage.image);
    if (ref.repository !== "node" && ref.repository !== "docker.io/library/node")
      problems.push(`${at}: not the official node image`);
    const tag = /^(\d+)(?:\.\d+\.\d+)?-bookworm-slim$/.exec(ref.tag ?? "");
    if (!tag)
      problems.push(`${at}: the tag must be <major>-bookworm-slim, not ${ref.tag ?? "none (latest)"}`);
    else if (tag[1] !== nodeMajor)
      problems.push(`${at}: Node ${tag[1]}, but package.json's engines ask for Node ${nodeMajor}`);
    if (!/^sha256:[0-9a-f]{64}$/.test(ref.digest ?? ""))
      problems.push(`${at}: not pinned by digest (@sha256:<64 hex digits>)`);
  }
  const images = new Set(stages.map(s => s.image));
  if (images.size > 1) problems.push(`the stages use different images: ${[...images].join(", ")}`);
  const froms = new Set(stages.map(s => s.from));
  if (froms.size > 1 || !/^\$\{?\w+\}?$/.test(stages[0].from))
    problems.push(
      `every FROM must name the image through the same build ARG (ARG NODE_IMAGE=... before the first FROM, then FROM \${NODE_IMAGE}), not ${[...froms].join(", ")}`,
    );
  return problems;
}

/** Docker's .dockerignore semantics, simplified: glob patterns, `!` exceptions, last match wins. */
export function dockerIgnoreMatcher(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map(l => l.trim())
    .filter(l => l && !l.startsWith("#"))
    .map(l => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, "");
      const source = pattern
        .split("/")
        .map(part =>
          part === "**"
            ? ".*"
            : part
                .replace(/[.+^${}()|\\]/g, "\\$&")
                .replace(/\*/g, "[^/]*")
                .replace(/\?/g, "[^/]"),
        )
        .join("/");
      return { negate, regex: new RegExp(`^${source}(/.*)?$`) };
    });
  return (path: string) => {
    let ignored = false;
    for (const rule of rules) if (rule.regex.test(path)) ignored = !rule.negate;
    return ignored;
  };
}
